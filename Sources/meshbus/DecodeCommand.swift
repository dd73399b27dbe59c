import ArgumentParser
import MeshBusModel
import MeshtasticProtocol

import struct Foundation.Data

/// `meshbus decode`: FromRadio bytes in, MeshBus's JSON out. Lets anyone see exactly what
/// the broker would publish for bytes captured from a radio, and lets the interop tests
/// compare it key for key with the official Python library.
struct DecodeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "decode",
        abstract: "Decode FromRadio protobufs (one per stdin line, hex or base64) into MeshBus's JSON."
    )

    func run() throws {
        while let line = readLine() {
            let text = line.trimmingCharacters(in: " \t\r")
            if text.isEmpty { continue }
            say(Self.decode(text).jsonString)
        }
    }

    /// The JSON for one line: `{"packet": …}` as `meshtastic.receive` carries it for a packet,
    /// `{"fromRadio": …}` for any other message, `{"error": …}` for bytes that are not one.
    static func decode(_ text: String) -> JSONValue {
        guard let bytes = hexBytes(text) ?? Data(base64Encoded: text).map(Array.init) else {
            return .object(["error": .string("not hex or base64")])
        }
        guard let message = try? Meshtastic_FromRadio(serializedBytes: bytes) else {
            return .object(["error": .string("not a FromRadio protobuf")])
        }
        if case .packet(let packet)? = message.payloadVariant {
            return .object(["packet": PacketJSON.packet(packet)])
        }
        return .object(["fromRadio": PacketJSON.message(message)])
    }

    static func hexBytes(_ text: String) -> [UInt8]? {
        let digits = Array(text.utf8)
        guard digits.count % 2 == 0 else { return nil }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = hexValue(digits[index]), let low = hexValue(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    private static func hexValue(_ digit: UInt8) -> UInt8? {
        switch digit {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
        default: nil
        }
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        let trim = Set(set)
        return String(drop { trim.contains($0) }.reversed().drop { trim.contains($0) }.reversed())
    }
}
