import MeshBusModel

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The JSON envelope every event carries (schema 1), written straight to bytes: the
/// envelope's own keys first, then the event's fields.
public enum Envelope {
    public static let schema = 1

    /// The whole envelope with `fields` after the envelope's own keys.
    public static func bytes(broker: String, slot: String, topic: String, seq: UInt64, time: String, fields: JSONObject) -> [UInt8] {
        write(head: head(broker: broker, slot: slot), topic: topic, seq: seq, time: time) { writeMembers(fields, to: &$0) }.bytes
    }

    /// Writes one envelope: the slot's ``head(broker:slot:)``, `topic`, `seq` and `time`, then
    /// the members `writeFields` appends (`,"key":value`), then `}`; returns what it returned,
    /// and where its members begin.
    public static func write<Result>(
        head: [UInt8], topic: String, seq: UInt64, time: String, writeFields: (inout [UInt8]) -> Result
    ) -> (bytes: [UInt8], fieldsStart: Int, result: Result) {
        var out: [UInt8] = []
        out.reserveCapacity(512)
        out.append(contentsOf: head)
        writeRest(topic: topic, seq: seq, time: time, to: &out)
        let fieldsStart = out.count
        let result = writeFields(&out)
        out.append(UInt8(ascii: "}"))
        return (out, fieldsStart, result)
    }

    /// The envelope's own keys: an event's fields never replace them.
    public static let ownKeys: Set<String> = ["schema", "broker", "slot", "topic", "seq", "time"]

    /// `{"schema":1,"broker":…,"slot":…`: the part every event of a slot shares, made once.
    public static func head(broker: String, slot: String) -> [UInt8] {
        var out = Array("{\"schema\":\(schema),\"broker\":".utf8)
        JSONValue.writeString(broker, to: &out)
        out.append(contentsOf: ",\"slot\":".utf8)
        JSONValue.writeString(slot, to: &out)
        return out
    }

    /// `,"topic":…,"seq":…,"time":…` after the ``head(broker:slot:)``.
    private static func writeRest(topic: String, seq: UInt64, time: String, to out: inout [UInt8]) {
        out.append(contentsOf: ",\"topic\":".utf8)
        JSONValue.writeString(topic, to: &out)
        out.append(contentsOf: ",\"seq\":".utf8)
        JSONValue.writeInteger(seq, to: &out)
        out.append(contentsOf: ",\"time\":".utf8)
        JSONValue.writeString(time, to: &out)
    }

    /// Writes each member as `,"key":value`, leaving out any that would repeat one of the
    /// envelope's own keys (a JSON object's keys are unique).
    public static func writeMembers(_ fields: JSONObject, to out: inout [UInt8]) {
        for entry in fields.entries where !ownKeys.contains(entry.key) { writeMember(entry.key, entry.value, to: &out) }
    }

    public static func writeMember(_ key: String, _ value: JSONValue, to out: inout [UInt8]) {
        out.append(UInt8(ascii: ","))
        JSONValue.writeString(key, to: &out)
        out.append(UInt8(ascii: ":"))
        value.write(to: &out)
    }

    /// UTC time with milliseconds, e.g. `2026-11-22T18:00:00.123Z`.
    public static func timestamp(millisecondsSince1970 milliseconds: Int64) -> String {
        var whole = time_t(milliseconds / 1000)
        var parts = tm()
        gmtime_r(&whole, &parts)
        // Digits written straight into 24 bytes: string interpolation and padding were a
        // measurable share of every event.
        return String(unsafeUninitializedCapacity: 24) { buffer in
            func put(_ value: Int, _ width: Int, at offset: Int) {
                var value = value
                for position in stride(from: offset + width - 1, through: offset, by: -1) {
                    buffer[position] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
            }
            put(Int(parts.tm_year) + 1900, 4, at: 0)
            put(Int(parts.tm_mon) + 1, 2, at: 5)
            put(Int(parts.tm_mday), 2, at: 8)
            put(Int(parts.tm_hour), 2, at: 11)
            put(Int(parts.tm_min), 2, at: 14)
            put(Int(parts.tm_sec), 2, at: 17)
            put(Int(milliseconds % 1000), 3, at: 20)
            buffer[4] = UInt8(ascii: "-")
            buffer[7] = UInt8(ascii: "-")
            buffer[10] = UInt8(ascii: "T")
            buffer[13] = UInt8(ascii: ":")
            buffer[16] = UInt8(ascii: ":")
            buffer[19] = UInt8(ascii: ".")
            buffer[23] = UInt8(ascii: "Z")
            return 24
        }
    }

    /// The current wall-clock time in milliseconds since 1970.
    public static func nowMilliseconds() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }

    /// The current time in envelope form.
    public static func now() -> String {
        timestamp(millisecondsSince1970: nowMilliseconds())
    }

    /// A random 64-bit broker id as 16 hex digits.
    public static func makeBrokerID() -> String {
        let hex = String(UInt64.random(in: 0...UInt64.max), radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
