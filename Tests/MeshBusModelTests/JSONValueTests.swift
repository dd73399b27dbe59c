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
