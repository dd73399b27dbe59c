import BluetoothLE
import Broker
import Logging
import MQTT
import MeshtasticProtocol
import RadioLink
import RadioSimulator
import VirtualRadio
import Yams
import ZeroMQ

import struct Foundation.URL
import class Foundation.FileManager

/// Reads `meshbus.yaml` (design.md §6) into typed settings.
///
/// Every problem names the file, the line and the key path (`slots[1].tcp`), and all of them
/// are reported at once, so one `meshbus check` run shows everything to fix. Unknown keys are
/// problems too: a misspelt setting never passes silently.
public enum ConfigurationFile {
    /// Reads and parses the file at `path`.
    public static func load(path: String) throws(ConfigurationError) -> DaemonConfiguration {
        let text: String
        do {
            text = try String(contentsOfFile: path, encoding: .utf8)
        } catch {
            throw ConfigurationError(problems: [.init(file: path, line: 0, key: "", message: "cannot read the file (\(error.localizedDescription))")])
        }
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        return try parse(text, file: path, directory: directory)
    }

    /// Parses YAML text; `file` names it in messages, `directory` resolves relative key files.
    public static func parse(_ text: String, file: String, directory: String = ".") throws(ConfigurationError) -> DaemonConfiguration {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch let error as YamlError {
            throw ConfigurationError(problems: Self.problems(error, file: file, text: text))
        } catch {
            throw ConfigurationError(problems: [.init(file: file, line: 0, key: "", message: "\(error)")])
        }
        var reader = Reader(file: file, directory: directory)
        let configuration = reader.daemon(root)
        guard reader.problems.isEmpty else {
            // In file order, whatever order the sections were read in.
            throw ConfigurationError(problems: reader.problems.enumerated().sorted { ($0.element.line, $0.offset) < ($1.element.line, $1.offset) }.map(\.element))
        }
        return configuration
    }

    /// `500ms`, `12s`, `2m`, `1h`, decimals allowed; nil for anything else.
    static func parseDuration(_ text: String) -> Duration? {
        let units: [(String, Double)] = [("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600)]
        for (unit, seconds) in units where text.hasSuffix(unit) {
            let digits = text.dropLast(unit.count)
            guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }), let value = Double(digits) else { continue }
            return .milliseconds(Int64((value * seconds * 1000).rounded()))
        }
        return nil
    }

    private static func problems(_ error: YamlError, file: String, text: String) -> [ConfigurationError.Problem] {
        guard case .duplicatedKeysInMapping(let duplicates, let context) = error else { return [problem(error, file: file)] }
        // libyaml reports where the mapping starts; the repeated key's own line is more use.
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        return duplicates.sorted().map { key in
            let uses = lines.indices.filter { index in
                var line = lines[index].drop { $0 == " " }
                if line.hasPrefix("- ") { line = line.dropFirst(2).drop { $0 == " " } }
                return line.hasPrefix("\(key):") || line.hasPrefix("\(key) :")
            }
            let line = uses.count >= 2 ? uses[1] + 1 : context.mark.line
            return .init(file: file, line: line, key: key, message: "given twice in one mapping")
        }
    }

    private static func problem(_ error: YamlError, file: String) -> ConfigurationError.Problem {
        switch error {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _), .composer(_, let problem, let mark, _):
            return .init(file: file, line: mark.line, key: "", message: "YAML syntax: \(problem)")
        case .reader(let problem, _, _, _):
            return .init(file: file, line: 1, key: "", message: "YAML: \(problem)")
        default:
            return .init(file: file, line: 1, key: "", message: "YAML: \(error)")
        }
    }
}

/// Walks the YAML tree, building settings and collecting problems.
private struct Reader {
    let file: String
    let directory: String
    var problems: [ConfigurationError.Problem] = []

    init(file: String, directory: String) {
        self.file = file
        self.directory = directory
    }

    mutating func report(_ node: Node?, _ key: String, _ message: String) {
        problems.append(.init(file: file, line: node?.mark?.line ?? 1, key: key, message: message))
    }

    // MARK: Shapes

    /// The entries of a mapping, after checking every key is one of `known`. Reports a
    /// non-mapping and unknown keys.
    mutating func mapping(_ node: Node, _ path: String, known: [String]) -> [String: Node]? {
        guard case .mapping(let mapping) = node else {
            report(node, path, "expected a mapping of \(known.joined(separator: ", "))")
            return nil
        }
        var entries: [String: Node] = [:]
        for (keyNode, value) in mapping {
            let key = keyNode.string ?? ""
            let keyPath = path.isEmpty ? key : "\(path).\(key)"
            // Repeated keys never get here: Yams refuses them while composing.
            if known.contains(key) {
                entries[key] = value
            } else {
                report(keyNode, keyPath, "unknown key; expected one of \(known.joined(separator: ", "))")
            }
        }
        return entries
    }

    /// The text of a non-null scalar; reports anything else (so nil means reported).
    mutating func scalar(_ node: Node, _ path: String, expected: String) -> String? {
        guard case .scalar(let scalar) = node, node.null == nil else {
            report(node, path, "expected \(expected)")
            return nil
        }
        return scalar.string
    }

    mutating func string(_ node: Node, _ path: String) -> String? {
        guard let text = scalar(node, path, expected: "a string") else { return nil }
        guard !text.isEmpty else {
            report(node, path, "must not be empty")
            return nil
        }
        return text
    }

    mutating func integer(_ node: Node, _ path: String, in range: ClosedRange<Int>) -> Int? {
        guard let text = scalar(node, path, expected: "a whole number") else { return nil }
        guard let value = Int(text) else {
            report(node, path, "expected a whole number, got '\(text)'")
            return nil
        }
        guard range.contains(value) else {
            report(node, path, "must be from \(range.lowerBound) to \(range.upperBound), got \(value)")
            return nil
        }
        return value
    }

    mutating func number(_ node: Node, _ path: String, atLeast minimum: Double) -> Double? {
        guard let text = scalar(node, path, expected: "a number") else { return nil }
        guard let value = Double(text), value.isFinite else {
            report(node, path, "expected a number, got '\(text)'")
            return nil
        }
        guard value >= minimum else {
            report(node, path, "must be at least \(minimum), got \(text)")
            return nil
        }
        return value
    }

    mutating func bool(_ node: Node, _ path: String) -> Bool? {
        guard let value = node.bool, case .scalar = node else {
            report(node, path, "expected true or false")
            return nil
        }
        return value
    }

    /// A duration with a unit: `500ms`, `12s`, `2m`, `1h`, decimals allowed (`2.5s`).
    mutating func duration(_ node: Node, _ path: String, allowZero: Bool = false) -> Duration? {
        guard let text = scalar(node, path, expected: "a duration like 12s, 500ms or 2m") else { return nil }
        guard let duration = ConfigurationFile.parseDuration(text) else {
            report(node, path, "expected a duration like 12s, 500ms or 2m, got '\(text)'")
            return nil
        }
        guard allowZero || duration > .zero else {
            report(node, path, "must be longer than 0")
            return nil
        }
        return duration
    }

    /// One string or a list of them.
    mutating func strings(_ node: Node, _ path: String) -> [(String, Node, String)] {
        if case .sequence(let sequence) = node {
            return sequence.enumerated().compactMap { index, item in
                let itemPath = "\(path)[\(index)]"
                return string(item, itemPath).map { ($0, item, itemPath) }
            }
        }
        return string(node, path).map { [($0, node, path)] } ?? []
    }

    mutating func items(_ node: Node, _ path: String) -> [(Node, String)] {
        guard case .sequence(let sequence) = node else {
            report(node, path, "expected a list")
            return []
        }
        return sequence.enumerated().map { ($1, "\(path)[\($0)]") }
    }

    // MARK: Sections

    static let topKeys = [
        "events", "commands", "slots", "timing", "outboxCapacity", "replayCapacity", "subscriberQueue", "flushTimeout", "stateDirectory", "metrics", "http",
        "log", "security", "mqtt",
    ]

    mutating func daemon(_ root: Node?) -> DaemonConfiguration {
        var daemon = DaemonConfiguration()
        guard let root else {
            report(nil, "slots", "the file is empty; list at least the slots")
            return daemon
        }
        guard let top = mapping(root, "", known: Self.topKeys) else { return daemon }
        var broker = BrokerConfiguration()
        if let node = top["security"] { broker.security = security(node) }
        if let node = top["events"] { broker.events = endpoints(node, "events", security: broker.security) }
        if let node = top["commands"] { broker.commands = endpoints(node, "commands", security: broker.security) }
        if let node = top["outboxCapacity"], let value = integer(node, "outboxCapacity", in: 1...100_000) { broker.outboxCapacity = value }
        if let node = top["replayCapacity"], let value = integer(node, "replayCapacity", in: 1...10_000_000) { broker.replayCapacity = value }
        if let node = top["subscriberQueue"], let value = integer(node, "subscriberQueue", in: 1...10_000_000) { broker.subscriberQueue = value }
        if let node = top["flushTimeout"], let value = duration(node, "flushTimeout", allowZero: true) { broker.flushTimeout = value }
        if let node = top["stateDirectory"], let path = string(node, "stateDirectory") { broker.stateDirectory = resolve(path) }
        let defaults = top["timing"].map { timing($0, "timing", base: LinkTiming()) } ?? LinkTiming()
        if let node = top["slots"] {
            broker.slots = slots(node, timing: defaults, security: broker.security)
        } else {
            report(root, "slots", "missing; list the radios, each with a name and one of tcp, serial, ble, simulator or webserial")
        }
        daemon.metrics = listener(top["metrics"], "metrics", security: broker.security)
        daemon.http = listener(top["http"], "http", security: broker.security)
        if let node = top["log"] { daemon.log = log(node) }
        if let node = top["mqtt"] { daemon.mqtt = mqtt(node, security: broker.security) }
        daemon.broker = broker
        return daemon
    }

    /// `mqtt.tls`: `true` (the system's CAs), or `{caFile, certificateFile, keyFile, serverName}`
    /// (paths relative to the config file's directory).
    mutating func tls(_ node: Node) -> MQTTTLS? {
        if case .scalar = node {
            guard let on = bool(node, "mqtt.tls") else { return nil }
            return on ? MQTTTLS() : nil
        }
        guard let entries = mapping(node, "mqtt.tls", known: ["caFile", "certificateFile", "keyFile", "serverName"]) else { return nil }
        var tls = MQTTTLS()
        func file(_ key: String) -> String? {
            guard let fileNode = entries[key], let path = string(fileNode, "mqtt.tls.\(key)") else { return nil }
            let resolved = resolve(path)
            if !FileManager.default.isReadableFile(atPath: resolved) { report(fileNode, "mqtt.tls.\(key)", "cannot read \(path)") }
            return resolved
        }
        tls.caFile = file("caFile")
        tls.certificateFile = file("certificateFile")
        tls.keyFile = file("keyFile")
        if (tls.certificateFile == nil) != (tls.keyFile == nil) {
            report(node, "mqtt.tls", "a client certificate needs both certificateFile and keyFile")
        }
        tls.serverName = entries["serverName"].flatMap { string($0, "mqtt.tls.serverName") }
        return tls
    }

    /// A path from the file: absolute, or relative to the config file's directory.
    func resolve(_ path: String) -> String {
        path.hasPrefix("/") ? path : "\(directory)/\(path)"
    }

    /// A CURVE key read from a file (a path relative to the config file's directory).
    mutating func keyFile(_ node: Node, _ path: String) -> String? {
        guard let file = string(node, path) else { return nil }
        let resolved = resolve(file)
        guard let text = try? String(contentsOfFile: resolved, encoding: .utf8) else {
            report(node, path, "cannot read \(file)")
            return nil
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard Z85.isCurveKey(trimmed) else {
            report(node, path, "\(file) does not hold a CURVE key (40 characters of Z85)")
            return nil
        }
        return trimmed
    }

    /// The `mqtt:` section of `meshbus mqtt --config`.
    mutating func mqtt(_ node: Node, security: SecurityConfiguration) -> MQTTBridgeSettings? {
        let keys = ["broker", "prefix", "site", "discovery", "clientId", "username", "passwordFile", "keepAlive", "insecure", "curveSecretKeyFile", "tls"]
        guard let entries = mapping(node, "mqtt", known: keys) else { return nil }
        var settings = MQTTBridgeSettings()
        if let value = entries["insecure"].flatMap({ bool($0, "mqtt.insecure") }) { settings.insecure = value }
        if let tlsNode = entries["tls"] { settings.tls = tls(tlsNode) }
        if let brokerNode = entries["broker"], let text = string(brokerNode, "mqtt.broker") {
            let defaultPort = settings.tls == nil ? 1883 : 8883
            if let address = HostPort(parsing: text.contains(":") ? text : "\(text):\(defaultPort)"), address.port > 0 {
                settings.broker = address
                if !address.isLoopback && !settings.insecure && settings.tls == nil {
                    report(brokerNode, "mqtt.broker", "\(text) is on another machine and plain MQTT sends the password and every packet in clear; use mqtt.tls, a loopback broker, or set mqtt.insecure: true")
                }
            } else {
                report(brokerNode, "mqtt.broker", "expected host:port (port \(defaultPort) if left out), got '\(text)'")
            }
        } else if settings.tls != nil {
            settings.broker.port = 8883
        }
        if let prefixNode = entries["prefix"], let text = string(prefixNode, "mqtt.prefix") {
            if MQTTBridgeSettings.isTopicPrefix(text) {
                settings.prefix = text
            } else {
                report(prefixNode, "mqtt.prefix", "expected topic levels without '+', '#', empty levels or a leading or trailing '/', got '\(text)'")
            }
        }
        if let value = entries["clientId"].flatMap({ string($0, "mqtt.clientId") }) { settings.clientID = value }
        if let siteNode = entries["site"], let text = string(siteNode, "mqtt.site") {
            if MQTTBridgeSettings.isSiteName(text) { settings.site = text } else { report(siteNode, "mqtt.site", "'\(text)' is not a site name: 1 to 32 of A-Z a-z 0-9 _ -") }
        }
        if let discoveryNode = entries["discovery"] {
            if discoveryNode.bool == false {
                settings.discoveryPrefix = nil
            } else if let text = string(discoveryNode, "mqtt.discovery") {
                if MQTTBridgeSettings.isTopicPrefix(text) { settings.discoveryPrefix = text } else { report(discoveryNode, "mqtt.discovery", "expected Home Assistant's discovery prefix or false, got '\(text)'") }
            }
        }
        if let value = entries["username"].flatMap({ string($0, "mqtt.username") }) { settings.username = value }
        if let fileNode = entries["passwordFile"], let path = string(fileNode, "mqtt.passwordFile") {
            if settings.username == nil { report(fileNode, "mqtt.passwordFile", "needs mqtt.username (MQTT 3.1.1 has no password without a user)") }
            settings.passwordFile = path
        }
        if let value = entries["keepAlive"].flatMap({ duration($0, "mqtt.keepAlive") }) { settings.keepAlive = value }
        if let keyNode = entries["curveSecretKeyFile"] {
            settings.curveSecretKey = keyFile(keyNode, "mqtt.curveSecretKeyFile")
            if let secret = settings.curveSecretKey, let clients = security.curve?.clients {
                let listed = (try? ZMQCurveKeyPair.publicKey(forSecret: secret)).map { key in clients.contains { $0.publicKey == key && $0.role == .send } }
                if listed != true { report(keyNode, "mqtt.curveSecretKeyFile", "its public key is not in security.curve.clients with role send") }
            }
        } else if security.curve != nil {
            report(node, "mqtt", "security.curve is set: give curveSecretKeyFile, the bridge's key (meshbus keygen), its public key listed in security.curve.clients with role send")
        }
        return settings
    }

    /// A `host:port` to listen on (`metrics`, `http`): reachable from other machines only
    /// with `security.insecure`.
    mutating func listener(_ node: Node?, _ key: String, security: SecurityConfiguration) -> HostPort? {
        guard let node, let text = string(node, key) else { return nil }
        guard let address = HostPort(parsing: text) else {
            report(node, key, "expected host:port, got '\(text)'")
            return nil
        }
        if !address.isLoopback && !security.insecure && !(key == "http" && security.tokens != nil) {
            let remedy = key == "http" ? ", configure security.tokens," : ""
            report(node, key, "\(text) is reachable from other machines; use a loopback address\(remedy) or set security.insecure: true")
        }
        return address
    }

    mutating func endpoints(_ node: Node, _ path: String, security: SecurityConfiguration) -> [String] {
        let found = strings(node, path)
        if case .sequence(let sequence) = node, sequence.isEmpty { report(node, path, "list at least one endpoint") }
        for (endpoint, item, itemPath) in found {
            guard endpoint.hasPrefix("tcp://") || endpoint.hasPrefix("ipc://") || endpoint.hasPrefix("inproc://") else {
                report(item, itemPath, "expected a ZeroMQ endpoint like tcp://127.0.0.1:7710 or ipc:///run/meshbus/events, got '\(endpoint)'")
                continue
            }
            if !SecurityConfiguration.isLoopback(endpoint), security.curve == nil, !security.insecure {
                report(item, itemPath, "\(endpoint) is reachable from other machines; configure security.curve or set security.insecure: true")
            }
        }
        return found.map(\.0)
    }

    mutating func slots(_ node: Node, timing defaults: LinkTiming, security: SecurityConfiguration) -> [SlotConfiguration] {
        var slots: [SlotConfiguration] = []
        var seen: Set<String> = []
        var virtualPorts: [String: String] = [:]
        for (item, path) in items(node, "slots") {
            guard let entries = mapping(item, path, known: ["name", "tcp", "serial", "ble", "simulator", "webserial", "timing", "virtualRadio"]) else { continue }
            var name: String?
            if let nameNode = entries["name"], let text = string(nameNode, "\(path).name") {
                if !SlotConfiguration.isValidName(text) {
                    report(nameNode, "\(path).name", "'\(text)' is not a slot name: 1 to 32 of A-Z a-z 0-9 _ -")
                } else if !seen.insert(text).inserted {
                    report(nameNode, "\(path).name", "slot '\(text)' is already defined")
                } else {
                    name = text
                }
            } else if entries["name"] == nil {
                report(item, "\(path).name", "missing; every slot needs a name")
            }
            let sources = ["tcp", "serial", "ble", "simulator", "webserial"].filter { entries[$0] != nil }
            guard sources.count == 1 else {
                report(item, path, sources.isEmpty ? "needs one of tcp, serial, ble, simulator or webserial" : "has \(sources.joined(separator: " and ")); give exactly one")
                continue
            }
            let source = radioSource(sources[0], entries[sources[0]]!, "\(path).\(sources[0])")
            let timing = entries["timing"].map { self.timing($0, "\(path).timing", base: defaults) } ?? defaults
            var virtual: VirtualRadioConfiguration?
            if let virtualNode = entries["virtualRadio"] {
                let virtualPath = "\(path).virtualRadio"
                virtual = virtualRadio(virtualNode, virtualPath, security: security)
                if let virtual, virtual.port != 0, let earlier = virtualPorts.updateValue(virtualPath, forKey: virtual.address) {
                    report(virtualNode, virtualPath, "\(virtual.address) is already the virtual radio of \(earlier)")
                }
            }
            if let name, let source { slots.append(SlotConfiguration(name: name, source: source, timing: timing, virtualRadio: virtual)) }
        }
        return slots
    }

    /// `ble: DEVICE` (an address or advertised name), or `{device, pin, adapter}` (design.md §7).
    mutating func ble(_ node: Node, _ path: String) -> RadioSource? {
        let device: String?
        var pin: UInt32?
        var adapter = "hci0"
        if case .mapping = node {
            guard let entries = mapping(node, path, known: ["device", "pin", "adapter"]) else { return nil }
            guard let deviceNode = entries["device"] else {
                report(node, path, "needs device: an address like AA:BB:CC:DD:EE:01 or the advertised name")
                return nil
            }
            device = string(deviceNode, "\(path).device")
            if let pinNode = entries["pin"] {
                guard let value = integer(pinNode, "\(path).pin", in: 0...999_999) else { return nil }
                pin = UInt32(value)
            }
            if let adapterNode = entries["adapter"], let name = string(adapterNode, "\(path).adapter") {
                guard name.hasPrefix("hci"), name.count > 3, name.dropFirst(3).allSatisfy(\.isNumber) else {
                    report(adapterNode, "\(path).adapter", "expected an adapter name like hci0, got '\(name)'")
                    return nil
                }
                adapter = name
            }
        } else {
            device = string(node, path)
        }
        guard let device, !device.isEmpty else { return nil }
        return .ble(BLEConfiguration(device: device, pin: pin, adapter: adapter))
    }

    mutating func radioSource(_ kind: String, _ node: Node, _ path: String) -> RadioSource? {
        switch kind {
        case "tcp":
            guard let text = string(node, path) else { return nil }
            let address = text.contains(":") ? HostPort(parsing: text) : HostPort(parsing: "\(text):4403")
            guard let address, address.port > 0 else {
                report(node, path, "expected host:port (port 4403 if left out), got '\(text)'")
                return nil
            }
            return .tcp(host: address.host, port: address.port)
        case "serial":
            guard let text = string(node, path) else { return nil }
            guard text.hasPrefix("/") else {
                report(node, path, "expected an absolute device path like /dev/ttyACM0, got '\(text)'")
                return nil
            }
            return .serial(path: text)
        case "ble":
            return ble(node, path)
        case "webserial":
            // Nothing to set yet: the browser brings the port.
            if node.null == nil, !(mapping(node, path, known: []) ?? [:]).isEmpty { return nil }
            return .webserial
        default:
            var simulator = SimulatorConfiguration()
            guard case .mapping = node else {
                if node.null != nil { return .simulator(simulator) }
                report(node, path, "expected a mapping of nodes, trafficPerMinute, seed (or nothing for the defaults)")
                return nil
            }
            guard let entries = mapping(node, path, known: ["nodes", "trafficPerMinute", "seed"]) else { return nil }
            if let value = entries["nodes"].flatMap({ integer($0, "\(path).nodes", in: 0...5000) }) { simulator.nodeCount = value }
            if let value = entries["trafficPerMinute"].flatMap({ number($0, "\(path).trafficPerMinute", atLeast: 0) }) {
                simulator.trafficPerMinute = value
            }
            if let value = entries["seed"].flatMap({ integer($0, "\(path).seed", in: 0...Int.max) }) { simulator.seed = UInt64(value) }
            return .simulator(simulator)
        }
    }

    /// `virtualRadio: 127.0.0.1:4404`, or a mapping with `listen` and the client policy.
    mutating func virtualRadio(_ node: Node, _ path: String, security: SecurityConfiguration) -> VirtualRadioConfiguration? {
        var settings = VirtualRadioConfiguration()
        let listenNode: Node
        let listenPath: String
        if case .mapping = node {
            guard let entries = mapping(node, path, known: ["listen", "allowAdmin", "clientBuffer", "maxClients", "sendTimeout"]) else { return nil }
            guard let listen = entries["listen"] else {
                report(node, "\(path).listen", "missing; give the address to listen on, like 127.0.0.1:4404")
                return nil
            }
            (listenNode, listenPath) = (listen, "\(path).listen")
            if let value = entries["allowAdmin"].flatMap({ bool($0, "\(path).allowAdmin") }) { settings.allowAdmin = value }
            if let value = entries["clientBuffer"].flatMap({ integer($0, "\(path).clientBuffer", in: 16...1_000_000) }) { settings.clientBuffer = value }
            if let value = entries["maxClients"].flatMap({ integer($0, "\(path).maxClients", in: 1...1024) }) { settings.maxClients = value }
            if let value = entries["sendTimeout"].flatMap({ duration($0, "\(path).sendTimeout", allowZero: false) }) { settings.sendTimeout = value }
        } else {
            (listenNode, listenPath) = (node, path)
        }
        guard let text = string(listenNode, listenPath) else { return nil }
        guard let address = HostPort(parsing: text) else {
            report(listenNode, listenPath, "expected host:port like 127.0.0.1:4404, got '\(text)'")
            return nil
        }
        if !address.isLoopback && !security.insecure {
            report(listenNode, listenPath, "\(text) is reachable from other machines and the Meshtastic API has no authentication; use a loopback address or set security.insecure: true")
        }
        settings.host = address.host
        settings.port = address.port
        return settings
    }

    static let timingKeys = [
        "healthCheckInterval", "probeTimeout", "readWriteTimeout", "maxStrikes", "reconnectCooldown", "baseBackoff", "maxBackoff",
        "backoffJitter", "interfaceInitTimeout", "connectTimeout", "disconnectedPollInterval", "heartbeatInterval", "stableAfter",
        "stormWindow", "stormLimit", "tcpKeepalive", "sendSpacing",
    ]

    /// Timing settings over `base` (the defaults, or the file's top-level `timing` for a
    /// slot). `connectTimeout` and `readWriteTimeout` are the names peer tools use for the
    /// handshake and probe timeouts; each may be given instead of its synonym, not with it.
    mutating func timing(_ node: Node, _ path: String, base: LinkTiming) -> LinkTiming {
        var timing = base
        guard let entries = mapping(node, path, known: Self.timingKeys) else { return timing }
        func set(_ key: String, _ field: WritableKeyPath<LinkTiming, Duration>, allowZero: Bool = false) {
            if let node = entries[key], let value = duration(node, "\(path).\(key)", allowZero: allowZero) { timing[keyPath: field] = value }
        }
        for (synonym, name) in [("connectTimeout", "interfaceInitTimeout"), ("readWriteTimeout", "probeTimeout")]
        where entries[synonym] != nil && entries[name] != nil {
            report(entries[synonym], "\(path).\(synonym)", "sets the same timeout as \(name); give one of them")
        }
        set("healthCheckInterval", \.healthCheckInterval)
        set("probeTimeout", \.probeTimeout)
        set("readWriteTimeout", \.probeTimeout)
        set("reconnectCooldown", \.reconnectCooldown, allowZero: true)
        set("baseBackoff", \.baseBackoff)
        set("maxBackoff", \.maxBackoff)
        set("backoffJitter", \.backoffJitter, allowZero: true)
        set("interfaceInitTimeout", \.interfaceInitTimeout)
        if let node = entries["connectTimeout"], let value = duration(node, "\(path).connectTimeout") {
            timing.interfaceInitTimeout = value
            timing.connectTimeout = value
        }
        set("disconnectedPollInterval", \.disconnectedPollInterval)
        set("heartbeatInterval", \.heartbeatInterval)
        set("stableAfter", \.stableAfter, allowZero: true)
        set("stormWindow", \.stormWindow)
        if let node = entries["maxStrikes"], let value = integer(node, "\(path).maxStrikes", in: 1...100) { timing.maxStrikes = value }
        if let node = entries["stormLimit"], let value = integer(node, "\(path).stormLimit", in: 1...1000) { timing.stormLimit = value }
        if timing.maxBackoff < timing.baseBackoff, entries["maxBackoff"] != nil || entries["baseBackoff"] != nil {
            report(entries["maxBackoff"] ?? entries["baseBackoff"] ?? node, "\(path).maxBackoff", "must not be shorter than baseBackoff")
        }
        if let node = entries["tcpKeepalive"], let keepalive = mapping(node, "\(path).tcpKeepalive", known: ["idle", "interval", "count"]) {
            if let value = keepalive["idle"].flatMap({ duration($0, "\(path).tcpKeepalive.idle") }) { timing.tcpKeepalive.idle = value }
            if let value = keepalive["interval"].flatMap({ duration($0, "\(path).tcpKeepalive.interval") }) { timing.tcpKeepalive.interval = value }
            if let value = keepalive["count"].flatMap({ integer($0, "\(path).tcpKeepalive.count", in: 1...100) }) { timing.tcpKeepalive.count = value }
        }
        if let node = entries["sendSpacing"], case .mapping(let spacing) = node {
            for (keyNode, value) in spacing {
                let name = keyNode.string ?? ""
                guard let port = PacketJSON.port(named: name) else {
                    report(keyNode, "\(path).sendSpacing.\(name)", "names no known port (use names like TEXT_MESSAGE_APP)")
                    continue
                }
                if let spacing = duration(value, "\(path).sendSpacing.\(name)", allowZero: true) { timing.sendSpacing[port] = spacing }
            }
        } else if let node = entries["sendSpacing"] {
            report(node, "\(path).sendSpacing", "expected a mapping of port names to durations")
        }
        return timing
    }

    mutating func log(_ node: Node) -> LogSettings {
        var settings = LogSettings()
        guard let entries = mapping(node, "log", known: ["level", "format"]) else { return settings }
        if let levelNode = entries["level"], let text = string(levelNode, "log.level") {
            if let level = Logger.Level(rawValue: text) {
                settings.level = level
            } else {
                report(levelNode, "log.level", "expected one of \(Logger.Level.allCases.map(\.rawValue).joined(separator: ", ")), got '\(text)'")
            }
        }
        if let formatNode = entries["format"], let text = string(formatNode, "log.format") {
            if let format = LogSettings.Format(rawValue: text) {
                settings.format = format
            } else {
                report(formatNode, "log.format", "expected text or json, got '\(text)'")
            }
        }
        return settings
    }

    mutating func security(_ node: Node) -> SecurityConfiguration {
        var security = SecurityConfiguration()
        guard let entries = mapping(node, "security", known: ["insecure", "curve", "tokens", "tokenFile"]) else { return security }
        if let value = entries["insecure"].flatMap({ bool($0, "security.insecure") }) { security.insecure = value }
        switch (entries["tokens"], entries["tokenFile"]) {
        case (let tokensNode?, nil): security.tokens = tokens(tokensNode)
        case (nil, let fileNode?): security.tokens = tokenFile(fileNode)
        case (_?, _?): report(node, "security", "give tokens or tokenFile, not both")
        case (nil, nil): break
        }
        guard let curveNode = entries["curve"],
            let curve = mapping(curveNode, "security.curve", known: ["secretKey", "secretKeyFile", "clients"])
        else { return security }
        var secretKey: String?
        switch (curve["secretKey"], curve["secretKeyFile"]) {
        case (let keyNode?, nil):
            secretKey = key(keyNode, "security.curve.secretKey")
        case (nil, let fileNode?):
            secretKey = keyFile(fileNode, "security.curve.secretKeyFile")
        case (_?, _?):
            report(curveNode, "security.curve", "give secretKey or secretKeyFile, not both")
        case (nil, nil):
            report(curveNode, "security.curve.secretKey", "missing; meshbus keygen prints a key pair")
        }
        var clients: [CurveClient] = []
        if let clientsNode = curve["clients"] {
            for (item, path) in items(clientsNode, "security.curve.clients") {
                guard let client = mapping(item, path, known: ["key", "role", "name"]) else { continue }
                let publicKey = client["key"].flatMap { key($0, "\(path).key") }
                if client["key"] == nil { report(item, "\(path).key", "missing; the client's public key") }
                var role = ClientRole.send
                if let roleNode = client["role"], let text = string(roleNode, "\(path).role") {
                    if let parsed = ClientRole(rawValue: text) {
                        role = parsed
                    } else {
                        report(roleNode, "\(path).role", "expected read or send, got '\(text)'")
                    }
                }
                if let text = client["name"] { _ = string(text, "\(path).name") }
                if let publicKey { clients.append(CurveClient(publicKey: publicKey, role: role)) }
            }
        } else {
            report(curveNode, "security.curve.clients", "missing; list the public keys of the clients to admit")
        }
        if let secretKey { security.curve = CurveConfiguration(secretKey: secretKey, clients: clients) }
        return security
    }

    /// `security.tokens`: `read` and `send`, each a list of bearer tokens.
    mutating func tokens(_ node: Node) -> AccessTokens? {
        guard let entries = mapping(node, "security.tokens", known: ["read", "send"]) else { return nil }
        var tokens = AccessTokens(read: [], send: [])
        for (role, list) in [(ClientRole.read, entries["read"]), (.send, entries["send"])] {
            guard let list else { continue }
            for (text, item, path) in strings(list, "security.tokens.\(role.rawValue)") {
                if let problem = Self.tokenProblem(text) { report(item, path, problem) }
                if role == .read { tokens.read.append(text) } else { tokens.send.append(text) }
            }
        }
        if tokens.read.isEmpty && tokens.send.isEmpty { report(node, "security.tokens", "list at least one token under read or send") }
        return tokens
    }

    /// `security.tokenFile`: a file kept apart from the configuration (mode 600), one
    /// `read TOKEN` or `send TOKEN` per line; blank lines and `#` comments are skipped.
    mutating func tokenFile(_ node: Node) -> AccessTokens? {
        guard let path = string(node, "security.tokenFile") else { return nil }
        guard let text = try? String(contentsOfFile: resolve(path), encoding: .utf8) else {
            report(node, "security.tokenFile", "cannot read \(path)")
            return nil
        }
        var tokens = AccessTokens(read: [], send: [])
        for (index, line) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let words = line.split(whereSeparator: \.isWhitespace)
            guard let first = words.first, !first.hasPrefix("#") else { continue }
            let role = ClientRole(rawValue: String(first))
            if words.count != 2 || role == nil {
                report(node, "security.tokenFile", "\(path) line \(index + 1): expected 'read TOKEN' or 'send TOKEN'")
                continue
            }
            let token = String(words[1])
            if let problem = Self.tokenProblem(token) { report(node, "security.tokenFile", "\(path) line \(index + 1): \(problem)") }
            if role == .read { tokens.read.append(token) } else { tokens.send.append(token) }
        }
        if tokens.read.isEmpty && tokens.send.isEmpty { report(node, "security.tokenFile", "\(path) holds no token") }
        return tokens
    }

    /// Why a bearer token is refused, nil if it is fine.
    static func tokenProblem(_ token: String) -> String? {
        if token.utf8.count < AccessTokens.minimumLength {
            return "a token needs at least \(AccessTokens.minimumLength) characters (meshbus keygen --token prints one)"
        }
        if !token.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._~".contains($0)) }) {
            return "a token is letters, digits and -._~ only (it travels in a header and in a URL unchanged)"
        }
        return nil
    }

    mutating func key(_ node: Node, _ path: String) -> String? {
        guard let text = string(node, path) else { return nil }
        guard Z85.isCurveKey(text) else {
            report(node, path, "not a CURVE key (40 characters of Z85, as meshbus keygen prints)")
            return nil
        }
        return text
    }
}
