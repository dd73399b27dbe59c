import Broker
import Testing

@Suite struct SecurityTests {
    @Test(arguments: [
        ("tcp://127.0.0.1:7710", true), ("tcp://127.8.9.10:1", true), ("tcp://localhost:7710", true), ("tcp://[::1]:7710", true),
        ("ipc:///run/meshbus/events", true), ("inproc://x", true), ("tcp://0.0.0.0:7710", false), ("tcp://*:7710", false),
        ("tcp://192.168.1.5:7710", false), ("tcp://eth0:7710", false), ("tcp://127.0.0.1.evil:1", false), ("tcp://[::]:1", false),
    ])
    func loopbackIsOnlyWhatNoOtherMachineReaches(endpoint: String, loopback: Bool) {
        #expect(SecurityConfiguration.isLoopback(endpoint) == loopback)
    }

    @Test func onlyCommandsThatReachARadioNeedTheSendRole() {
        let readOnly: [Command] = [.ping, .status(slot: nil), .nodes(slot: "a"), .snapshot(slot: "a"), .replay(slot: "a", sinceSeq: 0, limit: 1)]
        #expect(readOnly.allSatisfy { !$0.reachesRadio })
        let radio: [Command] = [.reconnect(slot: "a"), .disconnectForRestart(slot: "a", settleSeconds: 1)]
        #expect(radio.allSatisfy { $0.reachesRadio })
        if case .success(let parsed) = CommandEnvelope(parsing: Array(#"{"cmd":"sendText","slot":"a","text":"x"}"#.utf8)).command {
            #expect(parsed.reachesRadio)
        } else {
            Issue.record("sendText did not parse")
        }
    }

    @Test func brokerRefusesAnOpenEndpointWithoutCurveOrInsecure() async throws {
        let configuration = BrokerConfiguration(events: ["tcp://0.0.0.0:0"], commands: ["tcp://127.0.0.1:0"], slots: [])
        await #expect(throws: BrokerStartError.insecureEndpoint("tcp://0.0.0.0:0")) {
            _ = try await Broker(configuration: configuration)
        }
    }
}
