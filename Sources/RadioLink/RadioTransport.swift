import MeshtasticProtocol
import NIOCore
import NIOPosix

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// How a slot reaches its radio: one framed channel per session, and nothing else (never a
/// second connection, not even to probe). A radio that is no byte stream (BLE) delivers its
/// `FromRadio` messages as frames on such a channel, pumped by the transport for the session.
public protocol RadioTransport: Sendable, CustomStringConvertible {
    /// Opens the link and lends its channel to `serve` for one session, whose end `serve`
    /// returns; the transport closes what it opened afterwards. Throws only when the link
    /// cannot open: ``RadioTransportError/deviceAbsent`` when there is nothing to open yet
    /// (the manager then polls instead of backing off), anything else when the radio cannot
    /// be reached.
    func withChannel<Result: Sendable>(_ serve: (StreamChannel) async -> Result) async throws -> Result
    /// Short kind for `status`: `tcp`, `serial`, `simulator`, `ble`, `webserial`.
    var kind: String { get }
    /// Pause after the wake-up bytes, before the first frame (a sleeping serial device
    /// needs it; TCP does not).
    var wakeDelay: Duration { get }
    /// For a transport whose `open` throws ``RadioTransportError/awaitingPeer(_:)``: returns
    /// once a peer holds the radio (at once if one does now), or on cancellation.
    func waitForPeer() async
    /// Why the last opened channel closed, where the transport knows more than "closed" (a
    /// browser's tab closed, its port unplugged); taken once, nil otherwise.
    func takeCloseReason() -> LossReason?
}

/// A transport whose link is a channel it opens and then only serves: TCP, serial, a
/// browser's relay.
public protocol ChannelRadioTransport: RadioTransport {
    /// Opens the link (errors as for ``RadioTransport/withChannel(_:)``).
    func open() async throws -> StreamChannel
}

extension ChannelRadioTransport {
    public func withChannel<Result: Sendable>(_ serve: (StreamChannel) async -> Result) async throws -> Result {
        await serve(try await open())
    }
}

extension RadioTransport {
    public var wakeDelay: Duration { .zero }
    public func waitForPeer() async {}
    public func takeCloseReason() -> LossReason? { nil }
}

/// Why a transport could not open, where the manager treats it specially.
public struct RadioTransportError: Error, Hashable, CustomStringConvertible {
    private enum Code: Hashable {
        case deviceAbsent
        case awaitingPeer(String)
    }
    private let code: Code

    /// The device does not exist (yet): a serial path that is missing.
    public static let deviceAbsent = RadioTransportError(code: .deviceAbsent)

    /// The radio is reached only through a peer (a browser that holds it), and none does;
    /// `why` says so in a person's words, for `status`.
    public static func awaitingPeer(_ why: String) -> RadioTransportError { RadioTransportError(code: .awaitingPeer(why)) }

    /// Whether this is ``awaitingPeer(_:)``.
    public var isAwaitingPeer: Bool {
        if case .awaitingPeer = code { true } else { false }
    }

    public var description: String {
        switch code {
        case .deviceAbsent: "device absent"
        case .awaitingPeer(let why): why
        }
    }

    /// An open failure in a person's words: `Connection refused`, `connect timed out`, rather
    /// than SwiftNIO's full structure.
    public static func describe(_ error: any Error) -> String {
        if let connection = error as? NIOConnectionError {
            if let failure = connection.connectionErrors.first { return describe(failure.error) }
            return "cannot resolve \(connection.host)"
        }
        if let io = error as? IOError { return String(cString: strerror(io.errnoCode)) }
        if let channel = error as? ChannelError, case .connectTimeout = channel { return "connect timed out" }
        return "\(error)"
    }
}

/// A radio's TCP API (port 4403 on real radios), or the simulator's.
public struct TCPRadioTransport: ChannelRadioTransport {
    public let host: String
    public let port: Int
    public let connectTimeout: Duration
    public let keepalive: LinkTiming.TCPKeepalive
    let group: any EventLoopGroup

    public init(
        host: String,
        port: Int,
        connectTimeout: Duration = .seconds(10),
        keepalive: LinkTiming.TCPKeepalive = LinkTiming.TCPKeepalive(),
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton
    ) {
        self.host = host
        self.port = port
        self.connectTimeout = connectTimeout
        self.keepalive = keepalive
        self.group = group
    }

    public var kind: String { "tcp" }
    public var description: String { "tcp://\(host):\(port)" }

    public func open() async throws -> StreamChannel {
        var bootstrap = ClientBootstrap(group: group)
            .connectTimeout(.nanoseconds(Int64(connectTimeout.inSeconds * 1e9)))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
        #if os(Linux)
        // A radio that vanishes without a FIN is noticed by the kernel within
        // idle + interval × count, even between probes.
        let tcp = NIOBSDSocket.OptionLevel(rawValue: CInt(IPPROTO_TCP))
        bootstrap = bootstrap
            .channelOption(ChannelOptions.tcpLevel(tcp, NIOBSDSocket.Option(rawValue: TCP_KEEPIDLE)), value: SocketOptionValue(max(1, keepalive.idle.components.seconds)))
            .channelOption(ChannelOptions.tcpLevel(tcp, NIOBSDSocket.Option(rawValue: TCP_KEEPINTVL)), value: SocketOptionValue(max(1, keepalive.interval.components.seconds)))
            .channelOption(ChannelOptions.tcpLevel(tcp, NIOBSDSocket.Option(rawValue: TCP_KEEPCNT)), value: SocketOptionValue(max(1, keepalive.count)))
        #endif
        return try await bootstrap.connect(host: host, port: port) { channel in StreamChannel.configure(channel) }
    }
}

extension ChannelOptions {
    fileprivate static func tcpLevel(_ level: NIOBSDSocket.OptionLevel, _ name: NIOBSDSocket.Option) -> Types.SocketOption {
        Types.SocketOption(level: level, name: name)
    }
}

/// A radio on a serial line (USB CDC): the tty at `path`, raw 115200 8N1, held exclusively.
/// A path that does not exist is ``RadioTransportError/deviceAbsent``: the manager polls
/// until the device appears.
public struct SerialRadioTransport: ChannelRadioTransport {
    public let path: String
    public let baudRate: Int
    let group: any EventLoopGroup

    public init(path: String, baudRate: Int = 115_200, group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.path = path
        self.baudRate = baudRate
        self.group = group
    }

    public var kind: String { "serial" }
    public var description: String { "serial://\(path)" }
    /// The official client waits about 100 ms after the wake-up bytes.
    public var wakeDelay: Duration { .milliseconds(100) }

    public func open() async throws -> StreamChannel {
        let descriptor = Glibc.open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
        guard descriptor >= 0 else {
            let code = errno
            if code == ENOENT || code == ENODEV || code == ENXIO { throw RadioTransportError.deviceAbsent }
            throw IOError(errnoCode: code, reason: "open \(path)")
        }
        do {
            try Self.configureRaw(descriptor, baudRate: baudRate)
        } catch {
            _ = Glibc.close(descriptor)
            throw error
        }
        return try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(inputOutput: descriptor) { channel in
            StreamChannel.configure(channel)
        }
    }

    /// Raw mode, 8 data bits, no parity, 1 stop bit, no flow control, receiver on, modem
    /// lines ignored; exclusive, so no second opener can steal bytes.
    static func configureRaw(_ descriptor: CInt, baudRate: Int) throws {
        var settings = termios()
        guard tcgetattr(descriptor, &settings) == 0 else { throw IOError(errnoCode: errno, reason: "tcgetattr") }
        cfmakeraw(&settings)
        let speed = Self.speed(for: baudRate)
        cfsetispeed(&settings, speed)
        cfsetospeed(&settings, speed)
        settings.c_cflag &= ~(tcflag_t(PARENB) | tcflag_t(CSTOPB) | tcflag_t(CSIZE) | tcflag_t(CRTSCTS))
        settings.c_cflag |= tcflag_t(CS8 | CLOCAL | CREAD)
        settings.c_iflag &= ~tcflag_t(IXON | IXOFF | IXANY)
        guard tcsetattr(descriptor, TCSANOW, &settings) == 0 else { throw IOError(errnoCode: errno, reason: "tcsetattr") }
        _ = tcflush(descriptor, TCIOFLUSH)
        _ = ioctl(descriptor, UInt(TIOCEXCL))
    }

    static func speed(for baudRate: Int) -> speed_t {
        switch baudRate {
        case 9600: speed_t(B9600)
        case 19200: speed_t(B19200)
        case 38400: speed_t(B38400)
        case 57600: speed_t(B57600)
        case 230_400: speed_t(B230400)
        case 460_800: speed_t(B460800)
        case 921_600: speed_t(B921600)
        default: speed_t(B115200)
        }
    }
}

/// The two ends of a Unix socket pair, each given to NIO with its own pipeline: how a
/// transport that is no byte stream of its own (a browser's relay, BLE) gives the link a
/// channel. Closing one end is the other's end of stream.
public enum SocketPairChannels {
    public static func make<First: Sendable, Second: Sendable>(
        group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        first: @escaping @Sendable (any Channel) -> EventLoopFuture<First>,
        second: @escaping @Sendable (any Channel) -> EventLoopFuture<Second>
    ) async throws -> (First, Second) {
        var ends: [CInt] = [-1, -1]
        guard socketpair(AF_UNIX, CInt(SOCK_STREAM.rawValue) | CInt(SOCK_CLOEXEC.rawValue) | CInt(SOCK_NONBLOCK.rawValue), 0, &ends) == 0 else {
            throw IOError(errnoCode: errno, reason: "socketpair")
        }
        let one: First
        do {
            one = try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(inputOutput: ends[0], channelInitializer: first)
        } catch {
            _ = Glibc.close(ends[0])
            _ = Glibc.close(ends[1])
            throw error
        }
        do {
            return (one, try await NIOPipeBootstrap(group: group).takingOwnershipOfDescriptor(inputOutput: ends[1], channelInitializer: second))
        } catch {
            _ = Glibc.close(ends[1])
            throw error
        }
    }

    /// Both ends framed as a radio's stream.
    public static func framed(group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) async throws -> (StreamChannel, StreamChannel) {
        try await make(group: group, first: { StreamChannel.configure($0) }, second: { StreamChannel.configure($0) })
    }
}
