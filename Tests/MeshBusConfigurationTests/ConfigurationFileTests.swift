import BluetoothLE
import Broker
import MQTT
import RadioLink
import RadioSimulator
import Testing
import VirtualRadio

@testable import MeshBusConfiguration

@Suite struct ConfigurationFileTests {
    static let key = "Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID"

    func problems(_ yaml: String) -> [String] {
        do {
            _ = try ConfigurationFile.parse(yaml, file: "meshbus.yaml")
            return []
        } catch {
            return error.problems.map(\.description)
        }
    }

    /// Each broken file and the exact messages it gets.
    static let brokenFiles: [(yaml: String, expected: [String])] = [
        ("", ["meshbus.yaml:1: slots: the file is empty; list at least the slots"]),
        ("events: [tcp://127.0.0.1:7710]\n", ["meshbus.yaml:1: slots: missing; list the radios, each with a name and one of tcp, serial, ble, simulator or webserial"]),
        ("slots: [\n", ["meshbus.yaml:2: YAML syntax: did not find expected node content"]),
        ("- a\n- b\n", ["meshbus.yaml:1: expected a mapping of events, commands, slots, timing, outboxCapacity, replayCapacity, subscriberQueue, flushTimeout, stateDirectory, metrics, http, log, security, mqtt"]),
        ("slots: []\nslot: []\n", ["meshbus.yaml:2: slot: unknown key; expected one of events, commands, slots, timing, outboxCapacity, replayCapacity, subscriberQueue, flushTimeout, stateDirectory, metrics, http, log, security, mqtt"]),
        ("slots: []\nslots: []\n", ["meshbus.yaml:2: slots: given twice in one mapping"]),
        ("slots: {name: a}\n", ["meshbus.yaml:1: slots: expected a list"]),
        (
            "slots:\n  - name: roof\n    tcp: meshtastic.local:notaport\n",
            ["meshbus.yaml:3: slots[0].tcp: expected host:port (port 4403 if left out), got 'meshtastic.local:notaport'"]
        ),
        ("slots:\n  - name: desk\n    serial: ttyACM0\n", ["meshbus.yaml:3: slots[0].serial: expected an absolute device path like /dev/ttyACM0, got 'ttyACM0'"]),
        ("slots:\n  - {name: w, ble: {pin: 123456}}\n", ["meshbus.yaml:2: slots[0].ble: needs device: an address like AA:BB:CC:DD:EE:01 or the advertised name"]),
        ("slots:\n  - {name: w, ble: {device: x, pin: 1234567}}\n", ["meshbus.yaml:2: slots[0].ble.pin: must be from 0 to 999999, got 1234567"]),
        ("slots:\n  - {name: w, ble: {device: x, adapter: usb0}}\n", ["meshbus.yaml:2: slots[0].ble.adapter: expected an adapter name like hci0, got 'usb0'"]),
        ("slots:\n  - {name: w, ble: {device: x, passkey: 1}}\n", ["meshbus.yaml:2: slots[0].ble.passkey: unknown key; expected one of device, pin, adapter"]),
        ("slots: []\nmqtt: {broker: 192.0.2.7:1883}\n", ["meshbus.yaml:2: mqtt.broker: 192.0.2.7:1883 is on another machine and plain MQTT sends the password and every packet in clear; use mqtt.tls, a loopback broker, or set mqtt.insecure: true"]),
        ("slots: []\nmqtt: {tls: {certificateFile: /dev/null}}\n", ["meshbus.yaml:2: mqtt.tls: a client certificate needs both certificateFile and keyFile"]),
        ("slots: []\nmqtt: {site: 'north pole'}\n", ["meshbus.yaml:2: mqtt.site: 'north pole' is not a site name: 1 to 32 of A-Z a-z 0-9 _ -"]),
        ("slots: []\nmqtt: {prefix: 'a/#'}\n", ["meshbus.yaml:2: mqtt.prefix: expected topic levels without '+', '#', empty levels or a leading or trailing '/', got 'a/#'"]),
        ("slots: []\nmqtt: {passwordFile: /x}\n", ["meshbus.yaml:2: mqtt.passwordFile: needs mqtt.username (MQTT 3.1.1 has no password without a user)"]),
        ("slots:\n  - tcp: a:1\n", ["meshbus.yaml:2: slots[0].name: missing; every slot needs a name"]),
        ("slots:\n  - name: a\n", ["meshbus.yaml:2: slots[0]: needs one of tcp, serial, ble, simulator or webserial"]),
        ("slots:\n  - name: a\n    tcp: a:1\n    serial: /dev/x\n", ["meshbus.yaml:2: slots[0]: has tcp and serial; give exactly one"]),
        ("slots:\n  - {name: 'a b', tcp: 'h:1'}\n", ["meshbus.yaml:2: slots[0].name: 'a b' is not a slot name: 1 to 32 of A-Z a-z 0-9 _ -"]),
        (
            "slots:\n  - {name: a, tcp: 'h:1'}\n  - {name: a, tcp: 'h:2'}\n",
            ["meshbus.yaml:3: slots[1].name: slot 'a' is already defined"]
        ),
        ("slots:\n  - {name: a, simulator: {nodes: many}}\n", ["meshbus.yaml:2: slots[0].simulator.nodes: expected a whole number, got 'many'"]),
        ("slots:\n  - {name: a, simulator: {node: 3}}\n", ["meshbus.yaml:2: slots[0].simulator.node: unknown key; expected one of nodes, trafficPerMinute, seed"]),
        ("slots: []\ntiming: {probeTimeout: 8}\n", ["meshbus.yaml:2: timing.probeTimeout: expected a duration like 12s, 500ms or 2m, got '8'"]),
        ("slots: []\ntiming: {probeTimeout: 8 s}\n", ["meshbus.yaml:2: timing.probeTimeout: expected a duration like 12s, 500ms or 2m, got '8 s'"]),
        ("slots: []\ntiming: {healthCheckInterval: 0s}\n", ["meshbus.yaml:2: timing.healthCheckInterval: must be longer than 0"]),
        ("slots: []\ntiming: {maxStrikes: 0}\n", ["meshbus.yaml:2: timing.maxStrikes: must be from 1 to 100, got 0"]),
        ("slots: []\nsubscriberQueue: 0\n", ["meshbus.yaml:2: subscriberQueue: must be from 1 to 10000000, got 0"]),
        ("slots: []\ntiming:\n  baseBackoff: 20s\n", ["meshbus.yaml:3: timing.maxBackoff: must not be shorter than baseBackoff"]),
        (
            "slots: []\ntiming: {connectTimeout: 5s, interfaceInitTimeout: 9s}\n",
            ["meshbus.yaml:2: timing.connectTimeout: sets the same timeout as interfaceInitTimeout; give one of them"]
        ),
        ("slots: []\ntiming: {sendSpacing: {TEXT: 1s}}\n", ["meshbus.yaml:2: timing.sendSpacing.TEXT: names no known port (use names like TEXT_MESSAGE_APP)"]),
        (
            "slots:\n  - name: a\n    tcp: h:1\n    timing:\n      tcpKeepalive: {count: 0}\n",
            ["meshbus.yaml:5: slots[0].timing.tcpKeepalive.count: must be from 1 to 100, got 0"]
        ),
        ("slots:\n  - {name: a, simulator: , virtualRadio: 4404}\n", ["meshbus.yaml:2: slots[0].virtualRadio: expected host:port like 127.0.0.1:4404, got '4404'"]),
        (
            "slots:\n  - {name: a, simulator: , virtualRadio: 0.0.0.0:4404}\n",
            [
                "meshbus.yaml:2: slots[0].virtualRadio: 0.0.0.0:4404 is reachable from other machines and the Meshtastic API has no authentication; "
                    + "use a loopback address or set security.insecure: true"
            ]
        ),
        (
            "slots:\n  - name: a\n    simulator:\n    virtualRadio: {allowAdmin: yes}\n",
            ["meshbus.yaml:4: slots[0].virtualRadio.listen: missing; give the address to listen on, like 127.0.0.1:4404"]
        ),
        (
            "slots:\n  - name: a\n    simulator:\n    virtualRadio: {listen: 127.0.0.1:4404, clientBuffer: 2}\n",
            ["meshbus.yaml:4: slots[0].virtualRadio.clientBuffer: must be from 16 to 1000000, got 2"]
        ),
        (
            "slots:\n  - {name: a, simulator: , virtualRadio: 127.0.0.1:4404}\n  - {name: b, simulator: , virtualRadio: 127.0.0.1:4404}\n",
            ["meshbus.yaml:3: slots[1].virtualRadio: 127.0.0.1:4404 is already the virtual radio of slots[0].virtualRadio"]
        ),
        ("slots: []\nevents: 7710\n", ["meshbus.yaml:2: events: expected a ZeroMQ endpoint like tcp://127.0.0.1:7710 or ipc:///run/meshbus/events, got '7710'"]),
        ("slots: []\nevents: []\n", ["meshbus.yaml:2: events: list at least one endpoint"]),
        (
            "slots: []\ncommands: [tcp://0.0.0.0:7711]\n",
            ["meshbus.yaml:2: commands[0]: tcp://0.0.0.0:7711 is reachable from other machines; configure security.curve or set security.insecure: true"]
        ),
        ("slots: []\nmetrics: 9464\n", ["meshbus.yaml:2: metrics: expected host:port, got '9464'"]),
        (
            "slots: []\nmetrics: 0.0.0.0:9464\n",
            ["meshbus.yaml:2: metrics: 0.0.0.0:9464 is reachable from other machines; use a loopback address or set security.insecure: true"]
        ),
        ("slots: []\nhttp: localhost\n", ["meshbus.yaml:2: http: expected host:port, got 'localhost'"]),
        (
            "slots: []\nhttp: 0.0.0.0:7712\n",
            ["meshbus.yaml:2: http: 0.0.0.0:7712 is reachable from other machines; use a loopback address, configure security.tokens, or set security.insecure: true"]
        ),
        (
            "slots: []\nsecurity:\n  tokens: {read: [tiny]}\n",
            ["meshbus.yaml:3: security.tokens.read[0]: a token needs at least 16 characters (meshbus keygen --token prints one)"]
        ),
        (
            "slots: []\nsecurity:\n  tokens: {send: ['0123456789abcdef xyz']}\n",
            ["meshbus.yaml:3: security.tokens.send[0]: a token is letters, digits and -._~ only (it travels in a header and in a URL unchanged)"]
        ),
        ("slots: []\nsecurity:\n  tokens: {write: [0123456789abcdefgh]}\n", [
            "meshbus.yaml:3: security.tokens.write: unknown key; expected one of read, send",
            "meshbus.yaml:3: security.tokens: list at least one token under read or send",
        ]),
        ("slots: []\nsecurity:\n  tokenFile: /nonexistent/tokens\n", ["meshbus.yaml:3: security.tokenFile: cannot read /nonexistent/tokens"]),
        ("slots: []\noutboxCapacity: 0\n", ["meshbus.yaml:2: outboxCapacity: must be from 1 to 100000, got 0"]),
        ("slots: []\nlog: {level: loud}\n", ["meshbus.yaml:2: log.level: expected one of trace, debug, info, notice, warning, error, critical, got 'loud'"]),
        ("slots: []\nlog: {format: xml}\n", ["meshbus.yaml:2: log.format: expected text or json, got 'xml'"]),
        ("slots: []\nsecurity: {insecure: maybe}\n", ["meshbus.yaml:2: security.insecure: expected true or false"]),
        ("slots: []\nsecurity:\n  curve:\n    clients: []\n", ["meshbus.yaml:4: security.curve.secretKey: missing; meshbus keygen prints a key pair"]),
        (
            "slots: []\nsecurity:\n  curve:\n    secretKey: short\n    clients: []\n",
            ["meshbus.yaml:4: security.curve.secretKey: not a CURVE key (40 characters of Z85, as meshbus keygen prints)"]
        ),
        (
            "slots: []\nsecurity:\n  curve:\n    secretKey: '\(key)'\n    clients:\n      - {key: '\(key)', role: admin}\n",
            ["meshbus.yaml:6: security.curve.clients[0].role: expected read or send, got 'admin'"]
        ),
    ]

    @Test(arguments: brokenFiles.indices)
    func brokenFileGetsItsExactMessages(_ index: Int) {
        let (yaml, expected) = Self.brokenFiles[index]
        #expect(problems(yaml) == expected, "\(yaml)")
    }

    @Test func everyProblemOfAFileIsReportedInFileOrder() {
        let yaml = """
            timing: {maxStrikes: 0}
            slots:
              - {name: a, serial: x}
            log: {format: xml}
            """
        #expect(problems(yaml) == [
            "meshbus.yaml:1: timing.maxStrikes: must be from 1 to 100, got 0",
            "meshbus.yaml:3: slots[0].serial: expected an absolute device path like /dev/ttyACM0, got 'x'",
            "meshbus.yaml:4: log.format: expected text or json, got 'xml'",
        ])
    }

    @Test func designExampleParsesIntoTypedSettings() throws {
        let yaml = """
            events: [tcp://127.0.0.1:7710]
            commands: [tcp://127.0.0.1:7711]
            slots:
              - name: desk
                serial: /dev/serial/by-id/usb-RAKwireless_WisCore-if00
              - name: roof
                tcp: meshtastic.local:4403
                timing: {connectTimeout: 40s, readWriteTimeout: 3s, tcpKeepalive: {idle: 30s}}
              - name: sim
                simulator: {nodes: 6, trafficPerMinute: 30}
            timing: {healthCheckInterval: 12s, probeTimeout: 8s, maxStrikes: 2, baseBackoff: 500ms, maxBackoff: 2m}
            flushTimeout: 2.5s
            metrics: 127.0.0.1:9464
            http: 127.0.0.1:7712
            log: {level: debug, format: json}
            """
        let daemon = try ConfigurationFile.parse(yaml, file: "meshbus.yaml")
        let slots = daemon.broker.slots
        #expect(slots.map(\.name) == ["desk", "roof", "sim"])
        #expect(slots[0].source == .serial(path: "/dev/serial/by-id/usb-RAKwireless_WisCore-if00"))
        #expect(slots[1].source == .tcp(host: "meshtastic.local", port: 4403))
        #expect(slots[2].source == .simulator(SimulatorConfiguration(nodeCount: 6, trafficPerMinute: 30)))
        #expect(slots[0].timing.baseBackoff == .milliseconds(500) && slots[0].timing.maxBackoff == .seconds(120), "the file's timing applies to every slot")
        let roof = slots[1].timing
        #expect(roof.interfaceInitTimeout == .seconds(40) && roof.connectTimeout == .seconds(40), "connectTimeout sets the handshake timeout")
        #expect(roof.probeTimeout == .seconds(3), "readWriteTimeout sets the probe timeout")
        #expect(roof.tcpKeepalive == LinkTiming.TCPKeepalive(idle: .seconds(30)))
        #expect(roof.maxBackoff == .seconds(120), "a slot's own timing goes over the file's")
        #expect(daemon.broker.flushTimeout == .milliseconds(2500))
        #expect(daemon.metrics == HostPort(host: "127.0.0.1", port: 9464))
        #expect(daemon.http == HostPort(host: "127.0.0.1", port: 7712))
        #expect(daemon.log == LogSettings(level: .debug, format: .json))
    }

    @Test func virtualRadioTakesAnAddressOrAMappingWithItsPolicy() throws {
        let text = """
            slots:
              - {name: short, simulator: , virtualRadio: 127.0.0.1:4404}
              - name: long
                simulator:
                virtualRadio: {listen: "[::1]:4405", allowAdmin: true, clientBuffer: 256, maxClients: 4}
              - {name: none, simulator: }
            """
        let slots = try ConfigurationFile.parse(text, file: "meshbus.yaml").broker.slots
        #expect(slots[0].virtualRadio == VirtualRadioConfiguration(host: "127.0.0.1", port: 4404))
        #expect(slots[1].virtualRadio == VirtualRadioConfiguration(host: "::1", port: 4405, allowAdmin: true, clientBuffer: 256, maxClients: 4))
        #expect(slots[2].virtualRadio == nil)
    }

    @Test func bleTakesADeviceOrAMappingWithPinAndAdapter() throws {
        let text = """
            slots:
              - {name: window, ble: AA:BB:CC:DD:EE:01}
              - name: shed
                ble: {device: Meshtastic_ee02, pin: 123456, adapter: hci1}
            """
        let slots = try ConfigurationFile.parse(text, file: "meshbus.yaml").broker.slots
        #expect(slots[0].source == .ble(BLEConfiguration(device: "AA:BB:CC:DD:EE:01")))
        #expect(slots[1].source == .ble(BLEConfiguration(device: "Meshtastic_ee02", pin: 123_456, adapter: "hci1")))
    }

    @Test func theStateDirectoryIsResolvedAgainstTheConfigFilesDirectory() throws {
        let relative = try ConfigurationFile.parse("slots: []\nstateDirectory: state\n", file: "meshbus.yaml", directory: "/etc/meshbus")
        #expect(relative.broker.stateDirectory == "/etc/meshbus/state")
        let absolute = try ConfigurationFile.parse("slots: []\nstateDirectory: /var/lib/meshbus\n", file: "meshbus.yaml")
        #expect(absolute.broker.stateDirectory == "/var/lib/meshbus")
        #expect(try ConfigurationFile.parse("slots: []\n", file: "meshbus.yaml").broker.stateDirectory == nil, "off unless named")
    }

    @Test func theMQTTSectionIsReadForTheBridge() throws {
        let text = """
            slots: []
            mqtt:
              broker: mqtt.example:8883
              insecure: true
              site: north
              discovery: false
              username: meshbus
              passwordFile: /etc/meshbus/mqtt-password
              keepAlive: 10s
            """
        let mqtt = try #require(try ConfigurationFile.parse(text, file: "meshbus.yaml").mqtt)
        #expect(mqtt.broker == HostPort(host: "mqtt.example", port: 8883) && mqtt.insecure && mqtt.tls == nil)
        let tls = try #require(try ConfigurationFile.parse("slots: []\nmqtt: {broker: mqtt.example, tls: {serverName: broker.example}}\n", file: "meshbus.yaml").mqtt)
        #expect(tls.broker == HostPort(host: "mqtt.example", port: 8883), "TLS to another machine needs no insecure; its port is 8883")
        #expect(tls.tls == MQTTTLS(serverName: "broker.example"))
        #expect(mqtt.site == "north" && mqtt.discoveryPrefix == nil && mqtt.prefix == "meshbus")
        #expect(mqtt.username == "meshbus" && mqtt.passwordFile == "/etc/meshbus/mqtt-password" && mqtt.keepAlive == .seconds(10))
    }

    @Test func durationsTakeMillisecondsSecondsMinutesAndHours() {
        #expect(ConfigurationFile.parseDuration("500ms") == .milliseconds(500))
        #expect(ConfigurationFile.parseDuration("12s") == .seconds(12))
        #expect(ConfigurationFile.parseDuration("2m") == .seconds(120))
        #expect(ConfigurationFile.parseDuration("1.5h") == .seconds(5400))
        #expect(ConfigurationFile.parseDuration("12") == nil)
        #expect(ConfigurationFile.parseDuration("s") == nil)
        #expect(ConfigurationFile.parseDuration("-1s") == nil)
    }

    @Test func curveSectionWithRolesParses() throws {
        let yaml = "slots: []\nevents: [tcp://0.0.0.0:7710]\nsecurity:\n  curve:\n    secretKey: '\(Self.key)'\n    clients:\n      - {key: '\(Self.key)', role: read}\n      - {key: '\(Self.key)'}\n"
        let security = try ConfigurationFile.parse(yaml, file: "meshbus.yaml").broker.security
        #expect(security.curve?.clients.map(\.role) == [.read, .send], "role defaults to send")
    }

    /// Should take bearer tokens per role, and with them an HTTP listener beyond loopback.
    @Test func tokensGrantRolesAndOpenTheHTTPListener() throws {
        let yaml = "slots: []\nhttp: 0.0.0.0:7712\nsecurity:\n  tokens:\n    read: [reader-0123456789ab]\n    send: [sender-0123456789ab, both-0123456789abcd]\n"
        let daemon = try ConfigurationFile.parse(yaml, file: "meshbus.yaml")
        let tokens = try #require(daemon.broker.security.tokens)
        #expect(daemon.http?.port == 7712)
        #expect(tokens.role(of: "reader-0123456789ab") == .read)
        #expect(tokens.role(of: "both-0123456789abcd") == .send)
        #expect(tokens.role(of: "reader-0123456789a") == nil, "a prefix is not the token")
        #expect(tokens.role(of: "reader-0123456789abc") == nil, "nor a longer one")
        #expect(tokens.role(of: "") == nil)
    }
}
