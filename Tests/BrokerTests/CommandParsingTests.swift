import Broker
import MeshtasticProtocol
import Testing

@Suite struct CommandParsingTests {
    func parse(_ text: String) -> CommandEnvelope { CommandEnvelope(parsing: Array(text.utf8)) }

    func error(_ text: String) -> CommandError? {
        if case .failure(let error) = parse(text).command { return error }
        return nil
    }

    @Test func sendTextWithEveryFieldParses() throws {
        let envelope = parse(#"{"id":"a1","cmd":"sendText","slot":"roof","text":"hi","to":"!abcd1234","channel":2,"wantAck":true,"hopLimit":5,"replyId":7,"ttlSeconds":30,"requireReady":true}"#)
        #expect(envelope.id == .string("a1"))
        guard case .success(.sendText(let send)) = envelope.command else {
            Issue.record("expected sendText, got \(envelope.command)")
            return
        }
        #expect(send.slot == "roof")
        #expect(send.to == 0xABCD_1234)
        #expect(send.channel == 2)
        #expect(send.wantAck)
        #expect(send.hopLimit == 5)
        #expect(send.replyID == 7)
        #expect(send.ttlSeconds == 30)
        #expect(send.requireReady)
    }

    @Test func sendTextDefaultsToBroadcastOnChannelZero() {
        guard case .success(.sendText(let send)) = parse(#"{"cmd":"sendText","slot":"s","text":"x"}"#).command else {
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
}
