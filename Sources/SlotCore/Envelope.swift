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
        let (days, millisecondOfDay) = milliseconds.quotientAndRemainder(dividingBy: 86_400_000)
        let (year, month, day) = civilDate(daysSince1970: millisecondOfDay < 0 ? days - 1 : days)
        let time = millisecondOfDay < 0 ? millisecondOfDay + 86_400_000 : millisecondOfDay
        // Digits written straight into 24 bytes, and the calendar worked out here: string
        // interpolation and glibc's gmtime_r (which takes the time zone lock) were a
        // measurable share of every event.
        return String(unsafeUninitializedCapacity: 24) { buffer in
            func put(_ value: Int64, _ width: Int, at offset: Int) {
                var value = value
                for position in stride(from: offset + width - 1, through: offset, by: -1) {
                    buffer[position] = UInt8(ascii: "0") + UInt8(value % 10)
                    value /= 10
                }
            }
            put(year, 4, at: 0)
            put(month, 2, at: 5)
            put(day, 2, at: 8)
            put(time / 3_600_000, 2, at: 11)
            put(time / 60_000 % 60, 2, at: 14)
            put(time / 1000 % 60, 2, at: 17)
            put(time % 1000, 3, at: 20)
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

    /// The proleptic Gregorian date of a day counted from 1970-01-01 (the well-known
    /// era-based conversion: 400-year eras of 146,097 days, years starting in March).
    static func civilDate(daysSince1970 days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1_460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthFromMarch = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthFromMarch + 2) / 5 + 1
        let month = monthFromMarch < 10 ? monthFromMarch + 3 : monthFromMarch - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
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
