import Testing

@testable import DBus

/// Byte-exact wire cases. The expected bytes were produced by an independent implementation
/// (the `dbus-fast` Python package) for the same messages.
@Suite struct DBusMessageTests {
    static let cases: [(String, DBusMessage, String)] = {
        var hello = DBusMessage.methodCall(destination: "org.freedesktop.DBus", path: "/org/freedesktop/DBus", interface: "org.freedesktop.DBus", member: "Hello")
        hello.serial = 1
        var filter = DBusMessage.methodCall(
            destination: "org.bluez", path: "/org/bluez/hci0", interface: "org.bluez.Adapter1", member: "SetDiscoveryFilter",
            body: [.properties(["Transport": .string("le"), "UUIDs": .strings(["6ba1b218-15a8-461f-9fa8-5dcae273eafd"])])]
        )
        filter.serial = 7
        var write = DBusMessage.methodCall(
            destination: "org.bluez", path: "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01/service000c/char000d",
            interface: "org.bluez.GattCharacteristic1", member: "WriteValue", body: [.bytes([0x18, 0x2A]), .properties(["type": .string("request")])]
        )
        write.serial = 9
        var error = DBusMessage(kind: .error, destination: ":1.7", body: [.string("Not paired")])
        error.errorName = "org.bluez.Error.NotPermitted"
        error.replySerial = 9
        error.serial = 12
        var signal = DBusMessage(
            kind: .signal, path: "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01", interface: "org.freedesktop.DBus.Properties", member: "PropertiesChanged",
            body: [.string("org.bluez.Device1"), .properties(["Connected": .boolean(false), "ServicesResolved": .boolean(false)]), .strings([])]
        )
        signal.serial = 30
        var structs = DBusMessage.methodCall(
            destination: "x.y", path: "/a", interface: "x.y", member: "M",
            body: [.array(element: .structure([.int32, .int32]), []), .byte(5), .uint64(1 << 40)]
        )
        structs.serial = 2
        return [
            ("Hello", hello,
             "6c01000100000000010000006d00000001016f00150000002f6f72672f667265656465736b746f702f4442757300000002017300140000006f72672e667265656465736b746f702e4442757300000000030173000500000048656c6c6f00000006017300140000006f72672e667265656465736b746f702e4442757300000000"),
            ("a discovery filter (a{sv} with a string array in a variant)", filter,
             "6c01000165000000070000007b00000001016f000f0000002f6f72672f626c75657a2f686369300002017300120000006f72672e626c75657a2e41646170746572310000000000000301730012000000536574446973636f7665727946696c74657200000000000006017300090000006f72672e626c75657a000000000000000801670005617b73767d0000000000005d00000000000000090000005472616e73706f727400017300000000020000006c6500000000000005000000555549447300026173000000290000002400000036626131623231382d313561382d343631662d396661382d35646361653237336561666400"),
            ("a GATT write (ay, then a{sv} aligned to 8)", write,
             "6c0100012800000009000000ad00000001016f003a0000002f6f72672f626c75657a2f686369302f6465765f41415f42425f43435f44445f45455f30312f73657276696365303030632f6368617230303064000000000000020173001d0000006f72672e626c75657a2e47617474436861726163746572697374696331000000030173000a000000577269746556616c756500000000000006017300090000006f72672e626c75657a0000000000000008016700076179617b73767d0000000002000000182a00001800000000000000040000007479706500017300070000007265717565737400"),
            ("an error reply", error,
             "6c0300010f0000000c00000047000000040173001c0000006f72672e626c75657a2e4572726f722e4e6f745065726d697474656400000000050175000900000006017300040000003a312e370000000008016700017300000a0000004e6f742070616972656400"),
            ("PropertiesChanged with an empty string array", signal,
             "6c040001580000001e0000008600000001016f00250000002f6f72672f626c75657a2f686369302f6465765f41415f42425f43435f44445f45455f3031000000020173001f0000006f72672e667265656465736b746f702e444275732e50726f7065727469657300030173001100000050726f706572746965734368616e67656400000000000000080167000873617b73767d6173000000110000006f72672e626c75657a2e44657669636531000000340000000000000009000000436f6e6e656374656400016200000000000000001000000053657276696365735265736f6c766564000162000000000000000000"),
            ("an empty struct array still pads to 8, then a byte and a uint64", structs,
             "6c01000118000000020000004d00000001016f00020000002f610000000000000201730003000000782e79000000000003017300010000004d000000000000000601730003000000782e79000000000008016700076128696929797400000000000000000000000005000000000000000000000000010000"),
        ]
    }()

    @Test(arguments: cases.indices)
    func encodesByteForByteAsAnotherImplementationDoes(_ index: Int) {
        let (what, message, hex) = Self.cases[index]
        #expect(message.encoded() == bytes(hex), "\(what)")
    }

    @Test(arguments: cases.indices)
    func decodesWhatItEncodes(_ index: Int) throws {
        let (what, message, hex) = Self.cases[index]
        #expect(try DBusMessage(decoding: bytes(hex)) == message, "\(what)")
        #expect(try DBusMessage.length(ofMessageStartingWith: bytes(hex)) == bytes(hex).count)
    }

    @Test func readsBigEndianMessages() throws {
        // A signal `/a` `x.y` `S` with body `u` = 0x01020304, written big-endian by hand.
        let message = try DBusMessage(decoding: bytes(
            "42040001" + "00000004" + "00000003" + "00000037"
                + "01016f00" + "00000002" + "2f610000" + "00000000"
                + "02017300" + "00000003" + "782e7900" + "00000000"
                + "03017300" + "00000001" + "53000000" + "00000000"
                + "08016700" + "01750000"
                + "01020304"))
        #expect(message.kind == .signal && message.path == "/a" && message.interface == "x.y" && message.member == "S")
        #expect(message.body == [.uint32(0x0102_0304)])
    }

    @Test func roundTripsNestedValues() throws {
        var message = DBusMessage.methodCall(destination: nil, path: "/", interface: nil, member: "M", body: [
            .variant(.variant(.structure([.int16(-2), .double(0.5), .objectPath("/org/bluez/hci0"), .signature("a{oa{sa{sv}}}")]))),
            .array(element: .dictEntry(key: .objectPath, value: .array(.dictEntry(key: .string, value: .variant))), [
                .dictEntry(.objectPath("/org/bluez/hci0"), .properties(["Powered": .boolean(true), "Class": .uint32(0), "RSSI": .int16(-60)])),
            ]),
            .int64(-1), .boolean(true),
        ])
        message.serial = 3
        #expect(try DBusMessage(decoding: message.encoded()) == message)
        #expect(message.signature == "va{oa{sv}}xb")
    }

    /// Each is the Hello call with one byte changed: (what breaks, offset, new byte).
    @Test(arguments: [
        ("byte order mark", 0x00, 0x78),
        ("protocol version", 0x03, 2),
        ("message type", 0x01, 9),
        ("serial 0", 0x08, 0),
        ("padding after the path", 0x2E, 1),
        ("NUL inside the member", 0x5A, 0),
        ("a missing string terminator", 0x5D, 0x41),
        ("an object path with an empty segment", 0x19, 0x2F),
    ] as [(String, Int, UInt8)])
    func refusesMalformedMessagesWithAReason(_ what: String, _ offset: Int, _ byte: UInt8) {
        var message = bytes(Self.cases[0].2)
        message[offset] = byte
        #expect(throws: DBusWireError.self, "\(what)") { try DBusMessage(decoding: message) }
    }

    @Test func refusesLengthsOverTheLimitBeforeReadingThem() {
        var header = bytes(Self.cases[0].2)
        header.replaceSubrange(4..<8, with: [0xFF, 0xFF, 0xFF, 0x7F])
        #expect(throws: DBusWireError.tooLarge(0x7FFF_FFFF)) { try DBusMessage.length(ofMessageStartingWith: header) }
        #expect((try? DBusMessage.length(ofMessageStartingWith: header.prefix(15))) == .some(nil), "15 bytes are not a header yet")
    }

    @Test func refusesBooleansOtherThanZeroOrOne() {
        var message = DBusMessage.methodCall(destination: nil, path: "/", interface: nil, member: "M", body: [.boolean(true)])
        message.serial = 1
        var encoded = message.encoded()
        encoded[encoded.count - 4] = 2
        #expect(throws: DBusWireError.invalidValue("boolean other than 0 or 1")) { try DBusMessage(decoding: encoded) }
    }

    @Test func refusesVariantsNestedPastTheLimit() {
        var value = DBusValue.byte(1)
        for _ in 0..<70 { value = .variant(value) }
        var message = DBusMessage.methodCall(destination: nil, path: "/", interface: nil, member: "M", body: [value])
        message.serial = 1
        #expect(throws: DBusWireError.tooDeep) { try DBusMessage(decoding: message.encoded()) }
    }

    @Test(arguments: ["a", "a{vs}", "{ss}", "(", "()", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaay", "z"])
    func refusesInvalidSignatures(_ signature: String) {
        #expect(throws: DBusWireError.invalidSignature(signature)) { try DBusType.parse(signature) }
    }

    @Test func parsesSignaturesIntoCompleteTypes() throws {
        #expect(try DBusType.parse("sa{sv}as") == [.string, .array(.dictEntry(key: .string, value: .variant)), .array(.string)])
        #expect(try DBusType.parse("a(oa{sv})").map(\.description) == ["a(oa{sv})"])
    }
}

func bytes(_ hex: String) -> [UInt8] {
    var result: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        result.append(UInt8(hex[index..<next], radix: 16)!)
        index = next
    }
    return result
}
