/// Reads the top-level fields of a serialized protobuf message without decoding it, so a
/// nested message can be passed on as the bytes that arrived instead of being encoded again.
public enum ProtobufFields {
    /// The FromRadio field that carries a `MeshPacket`.
    public static let fromRadioPacket = 2

    /// The payload of length-delimited field `number`, if it occurs exactly once at the top
    /// level; nil if it is absent or repeated (protobuf would merge the parts), if the bytes
    /// are not a well-formed message, or if they contain a group (wire types 3 and 4).
    public static func lengthDelimited(_ number: Int, in bytes: [UInt8]) -> ArraySlice<UInt8>? {
        var index = 0
        var found: ArraySlice<UInt8>?
        while index < bytes.count {
            guard let key = varint(bytes, &index) else { return nil }
            let wireType = key & 7
            switch wireType {
            case 0:
                guard varint(bytes, &index) != nil else { return nil }
            case 1, 5:
                let width = wireType == 1 ? 8 : 4
                guard bytes.count - index >= width else { return nil }
                index += width
            case 2:
                guard let length = varint(bytes, &index), length <= UInt64(bytes.count - index) else { return nil }
                let end = index + Int(length)
                if key >> 3 == UInt64(number) {
                    guard found == nil else { return nil }
                    found = bytes[index..<end]
                }
                index = end
            default:
                return nil
            }
        }
        return found
    }

    private static func varint(_ bytes: [UInt8], _ index: inout Int) -> UInt64? {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while index < bytes.count, shift < 64 {
            let byte = bytes[index]
            index += 1
            value |= UInt64(byte & 0x7F) << shift
            if byte < 0x80 { return value }
            shift += 7
        }
        return nil
    }
}
