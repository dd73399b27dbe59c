import Foundation
import MeshBusModel
import Testing

@Suite struct JSONValueTests {
    @Test func parsesAndWritesBackUnchanged() throws {
        let text = #"{"a":[1,-2.5e3,true,null,"x\"\n\u00e9"],"b":{"c":18446744073709551615}}"#
        let value = try JSONValue(parsing: text)
        #expect(value["b"]?["c"] == .number("18446744073709551615"))
        #expect(value["a"] == .array([.number("1"), .number("-2.5e3"), .bool(true), .null, .string("x\"\né")]))
        #expect(try JSONValue(parsing: value.jsonString) == value)
    }

    @Test(arguments: ["", "{", "{\"a\" 1}", "[1,]", "01", "\"\\x\"", "{} x", "nul", "\"\u{01}\""])
    func rejectsMalformedText(_ text: String) {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: text) }
    }

    @Test func rejectsInvalidUTF8AndDeepNesting() {
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: [0x22, 0xFF, 0x22]) }
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: String(repeating: "[", count: 100) + String(repeating: "]", count: 100)) }
    }

    @Test func surrogatePairsDecode() throws {
        #expect(try JSONValue(parsing: #""\ud83d\ude00""#) == .string("😀"))
        #expect(throws: JSONParseError.self) { try JSONValue(parsing: #""\ud83d""#) }
    }

    @Test func objectsKeepInsertionOrder() {
        var object = JSONObject()
        object["z"] = .int(1)
        object["a"] = .int(2)
        object["z"] = .int(3)
        #expect(JSONValue.object(object).jsonString == #"{"z":3,"a":2}"#)
    }
}

@Suite struct JSONWritersTests {
    func written(_ body: (inout [UInt8]) -> Void) -> String {
        var out: [UInt8] = []
        body(&out)
        return String(decoding: out, as: UTF8.self)
    }

    @Test func integersAreWrittenAsTheirDescription() {
        let signed: [Int64] = [0, 7, -7, 10, -10, 1_800_000_000, Int64.max, Int64.min]
        for value in signed { #expect(written { JSONValue.writeInteger(value, to: &$0) } == value.description) }
        let unsigned: [UInt64] = [0, 9, 100, UInt64(UInt32.max), UInt64.max]
        for value in unsigned { #expect(written { JSONValue.writeInteger(value, to: &$0) } == value.description) }
        #expect(written { JSONValue.writeInteger(Int32.min, to: &$0) } == Int32.min.description)
        #expect(written { JSONValue.writeInteger(UInt8(255), to: &$0) } == "255")
    }

    /// Should write every length's padding as Foundation's `base64EncodedString()` does.
    @Test func base64MatchesFoundation() {
        var generator = SystemRandomNumberGenerator()
        for length in 0...40 {
            let bytes = (0..<length).map { _ in UInt8.random(in: 0...255, using: &generator) }
            let ours = written { out in bytes.withUnsafeBytes { JSONValue.writeBase64($0, to: &out) } }
            #expect(ours == Data(bytes).base64EncodedString(), "length \(length)")
        }
    }

    @Test func nodeIDsAreWrittenAsTheirTextInQuotes() {
        for number: UInt32 in [0, 1, 0xA1B2_C3D4, 0x0000_BEEF, 0xFFFF_FFFE, NodeID.broadcast] {
            #expect(written { NodeID.writeJSON(number, to: &$0) } == "\"\(NodeID.format(number))\"")
        }
    }
}
