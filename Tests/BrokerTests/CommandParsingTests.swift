import Broker
import Foundation
import MeshtasticProtocol
import Testing

@Suite struct CommandParsingTests {
    func parse(_ text: String) -> CommandEnvelope { CommandEnvelope(parsing: Array(text.utf8)) }

    func error(_ text: String) -> CommandError? {
        if case .failure(let error) = parse(text).command { return error }
        return nil
    }

    @Test func slotNamesFollowTheContract() {
        #expect(SlotConfiguration.isValidName("roof_2-a"))
        #expect(!SlotConfiguration.isValidName(""))
        #expect(!SlotConfiguration.isValidName("a/b"))
        #expect(!SlotConfiguration.isValidName(String(repeating: "a", count: 33)))
    }

    @Test func sendTextWithEveryFieldParses() throws {
        let envelope = parse(#"{"id":"a1","cmd":"sendText","slot":"roof","text":"hi","to":"!abcd1234","channel":2,"wantAck":true,"hopLimit":5,"replyId":7,"ttlSeconds":30,"requireReady":true}"#)
        #expect(envelope.id == .string("a1"))
        guard case .success(.send(let send)) = envelope.command else {
            Issue.record("expected sendText, got \(envelope.command)")
            return
        }
        #expect(send.slot == "roof")
        #expect(send.portnum == .textMessageApp)
        #expect(send.payload == Array("hi".utf8))
        #expect(send.to == 0xABCD_1234)
        #expect(send.channel == 2)
        #expect(send.wantAck)
        #expect(send.hopLimit == 5)
        #expect(send.replyID == 7)
        #expect(send.ttlSeconds == 30)
        #expect(send.requireReady)
    }

    @Test func sendTextDefaultsToBroadcastOnChannelZero() {
        guard case .success(.send(let send)) = parse(#"{"cmd":"sendText","slot":"s","text":"x"}"#).command else {
            Issue.record("expected sendText")
            return
        }
        #expect(send.to == NodeNumber.broadcast)
        #expect(send.channel == 0)
        #expect(!send.wantAck)
        #expect(send.ttlSeconds == 60)
    }

    @Test func garbageIsBadRequest() {
        #expect(error("\u{00}\u{01}garbage")?.code == "bad_request")
        #expect(parse("garbage").id == nil)
    }

    @Test func nonObjectIsBadRequest() {
        #expect(error("[1,2]") == .badRequest("request must be a JSON object, got array"))
    }

    @Test func missingFieldIsNamed() {
        #expect(error(#"{"cmd":"sendText","slot":"s"}"#) == .badRequest("missing field 'text'"))
        #expect(error(#"{"slot":"s"}"#) == .badRequest("missing field 'cmd'"))
    }

    @Test func mistypedFieldIsNamed() {
        #expect(error(#"{"cmd":"sendText","slot":"s","text":5}"#) == .badRequest("field 'text' must be a string, got number"))
        #expect(error(#"{"cmd":"sendText","slot":"s","text":"x","wantAck":"yes"}"#) == .badRequest("field 'wantAck' must be true or false, got string"))
        #expect(error(#"{"cmd":"sendText","slot":"s","text":"x","channel":8}"#) == .badRequest("field 'channel' must be an integer from 0 to 7"))
        #expect(error(#"{"cmd":"sendText","slot":"s","text":"x","to":"bob"}"#)?.message.contains("field 'to'") == true)
    }

    @Test func unknownCommandListsTheKnownOnes() {
        let refused = error(#"{"id":7,"cmd":"launch"}"#)
        #expect(refused?.code == "unknown_command")
        #expect(refused?.message.contains("sendText") == true)
        #expect(parse(#"{"id":7,"cmd":"launch"}"#).id == .number("7"))
    }

    @Test func textOverThePayloadLimitIsTooLongByUTF8Bytes() {
        // 117 two-byte characters are 234 bytes: one over the limit, though only 117 characters.
        let text = String(repeating: "é", count: 117)
        #expect(error(#"{"cmd":"sendText","slot":"s","text":"\#(text)"}"#) == .textTooLong(bytes: 234))
        let fits = String(repeating: "é", count: 116)
        #expect(error(#"{"cmd":"sendText","slot":"s","text":"\#(fits)"}"#) == nil)
    }

    @Test func sendDataTakesAPortByNameOrNumberAndABase64Payload() {
        guard case .success(.send(let byName)) = parse(#"{"cmd":"sendData","slot":"s","portnum":"PRIVATE_APP","payload":"AQID","wantAck":true}"#).command,
            case .success(.send(let byNumber)) = parse(#"{"cmd":"sendData","slot":"s","portnum":256,"payload":""}"#).command
        else {
            Issue.record("expected two sends")
            return
        }
        #expect(byName.portnum == .privateApp && byName.payload == [1, 2, 3] && byName.wantAck)
        #expect(byNumber.portnum == .privateApp && byNumber.payload.isEmpty)
    }

    @Test func sendDataRefusesBadPortsPayloadsAndOversizeData() {
        #expect(error(#"{"cmd":"sendData","slot":"s","payload":"AA=="}"#) == .badRequest("missing field 'portnum'"))
        #expect(error(#"{"cmd":"sendData","slot":"s","portnum":"NOPE_APP","payload":"AA=="}"#)?.message.contains("'portnum'") == true)
        #expect(error(#"{"cmd":"sendData","slot":"s","portnum":0,"payload":"AA=="}"#)?.message.contains("from 1 to 511") == true)
        #expect(error(#"{"cmd":"sendData","slot":"s","portnum":256,"payload":"***"}"#) == .badRequest("field 'payload' must be base64"))
        let big = Data(repeating: 7, count: 234).base64EncodedString()
        #expect(error(#"{"cmd":"sendData","slot":"s","portnum":256,"payload":"\#(big)"}"#) == .badRequest("field 'payload' is 234 bytes; the limit is 233"))
    }

    @Test func unknownFieldsAreRefusedByName() {
        let refused = error(#"{"cmd":"sendText","slot":"s","text":"x","wantack":true}"#)
        #expect(refused?.code == "bad_request")
        #expect(refused?.message.contains("unknown field 'wantack' for sendText") == true)
        #expect(refused?.message.contains("wantAck") == true, "lists the accepted fields")
        #expect(error(#"{"cmd":"ping","slot":"s"}"#)?.message.contains("unknown field 'slot' for ping") == true)
    }

    @Test func replayNeedsSinceSeqAndCapsItsLimit() {
        #expect(parse(#"{"cmd":"replay","slot":"s","sinceSeq":5}"#).command == .success(.replay(slot: "s", sinceSeq: 5, limit: Command.replayLimit)))
        #expect(parse(#"{"cmd":"replay","slot":"s","sinceSeq":0,"limit":10}"#).command == .success(.replay(slot: "s", sinceSeq: 0, limit: 10)))
        #expect(error(#"{"cmd":"replay","slot":"s"}"#) == .badRequest("missing field 'sinceSeq'"))
        #expect(error(#"{"cmd":"replay","slot":"s","sinceSeq":-1}"#)?.message.contains("'sinceSeq'") == true)
        #expect(error(#"{"cmd":"replay","slot":"s","sinceSeq":1,"limit":100000}"#)?.message.contains("'limit'") == true)
    }

    @Test func nodesSnapshotReconnectAndDisconnectForRestartNeedASlot() {
        for name in ["nodes", "snapshot", "reconnect", "disconnectForRestart"] {
            #expect(error(#"{"cmd":"\#(name)"}"#) == .badRequest("missing field 'slot'"), "\(name)")
        }
        #expect(parse(#"{"cmd":"disconnectForRestart","slot":"s"}"#).command == .success(.disconnectForRestart(slot: "s", settleSeconds: 3)))
    }

    @Test func malformedFramesGetSpecificErrors() {
        #expect(CommandEnvelope(parsing: [[UInt8]]()).command == .failure(.badRequest("empty request: no body frame")))
        #expect(CommandEnvelope(parsing: [Array("{}".utf8), Array("{}".utf8)]).command == .failure(.badRequest("a request is one frame; got 2")))
        #expect(CommandEnvelope(parsing: [[]]).command == .failure(.badRequest("empty request")))
        let huge = [UInt8](repeating: UInt8(ascii: " "), count: 1 << 20)
        #expect(CommandEnvelope(parsing: [huge]).command == .failure(.badRequest("request is 1048576 bytes; the limit is 65536")))
        let invalidUTF8: [UInt8] = Array(#"{"cmd":"ping","id":""#.utf8) + [0xC3, 0x28] + Array(#""}"#.utf8)
        guard case .failure(let failure) = CommandEnvelope(parsing: invalidUTF8).command else {
            Issue.record("invalid UTF-8 must be refused")
            return
        }
        #expect(failure.code == "bad_request")
    }
}
