import BluetoothLE
import RadioLink
import RadioSimulator
import VirtualRadio

/// Where a slot's radio is.
public enum RadioSource: Sendable, Equatable {
    /// A radio's TCP API.
    case tcp(host: String, port: Int)
    /// A radio on a serial line (USB CDC), by device path; polled while absent.
    case serial(path: String)
    /// The built-in virtual radio, run in-process and reached over loopback TCP like a real one.
    case simulator(SimulatorConfiguration)
    /// A radio held by a browser, which relays its serial port over a WebSocket (design.md §9).
    case webserial
    /// A radio over Bluetooth LE, through BlueZ (design.md §7).
    case ble(BLEConfiguration)
}

/// One slot: a name (`[A-Za-z0-9_-]{1,32}`), its radio, and optionally a virtual radio port
/// where existing Meshtastic clients share that radio.
public struct SlotConfiguration: Sendable, Equatable {
    public var name: String
    public var source: RadioSource
    public var timing: LinkTiming
    public var virtualRadio: VirtualRadioConfiguration?

    public init(name: String, source: RadioSource, timing: LinkTiming = LinkTiming(), virtualRadio: VirtualRadioConfiguration? = nil) {
        self.name = name
        self.source = source
        self.timing = timing
        self.virtualRadio = virtualRadio
    }

    /// The same slot without its virtual radio port: what its link is made from.
    var link: SlotConfiguration {
        var link = self
        link.virtualRadio = nil
        return link
    }

    /// Whether `name` is a valid slot name.
    public static func isValidName(_ name: String) -> Bool {
        (1...32).contains(name.utf8.count)
            && name.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || byte == UInt8(ascii: "_") || byte == UInt8(ascii: "-")
            }
    }
}

/// Everything the broker needs to start.
public struct BrokerConfiguration: Sendable, Equatable {
    public static let defaultEventEndpoint = "tcp://127.0.0.1:7710"
    public static let defaultCommandEndpoint = "tcp://127.0.0.1:7711"

    public var events: [String]
    public var commands: [String]
    public var slots: [SlotConfiguration]
    /// Packets a slot accepts before `queue_full`.
    public var outboxCapacity: Int
    /// Events each slot keeps for `replay`.
    public var replayCapacity: Int
    /// Messages the PUB socket queues for one subscriber before it drops that subscriber's
    /// (its send high-water mark): what one stuck consumer may cost in memory.
    public var subscriberQueue: Int
    /// Who may reach the sockets; see ``SecurityConfiguration``.
    public var security: SecurityConfiguration
    /// How long shutdown waits for the outboxes to drain before closing the radios.
    public var flushTimeout: Duration
    /// Where each slot journals its accepted sends until they are settled, so that a crash
    /// loses none (`<slot>.sends`); nil keeps them in memory only.
    public var stateDirectory: String?

    public init(
        events: [String] = [defaultEventEndpoint],
        commands: [String] = [defaultCommandEndpoint],
        slots: [SlotConfiguration] = [SlotConfiguration(name: "sim", source: .simulator(SimulatorConfiguration()))],
        outboxCapacity: Int = 64,
        replayCapacity: Int = 10_000,
        subscriberQueue: Int = 100_000,
        security: SecurityConfiguration = SecurityConfiguration(),
        flushTimeout: Duration = .seconds(5),
        stateDirectory: String? = nil
    ) {
        self.events = events
        self.commands = commands
        self.slots = slots
        self.outboxCapacity = outboxCapacity
        self.replayCapacity = replayCapacity
        self.subscriberQueue = subscriberQueue
        self.security = security
        self.flushTimeout = flushTimeout
        self.stateDirectory = stateDirectory
    }
}
