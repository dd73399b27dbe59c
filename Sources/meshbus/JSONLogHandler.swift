import Broker
import Logging
import MeshBusModel
import MeshtasticProtocol
import SlotCore
import Synchronization

/// A swift-log handler that writes one JSON object per line to standard error, for log
/// collectors (journald, Loki, Vector): `time` (UTC, as in event envelopes), `level`,
/// `label`, `message`, then the metadata as string fields.
struct JSONLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level
    private let label: String

    init(label: String, level: Logger.Level = .info) {
        self.label = label
        self.logLevel = level
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        var line: JSONObject = [
            "time": .string(Envelope.now()),
            "level": .string(event.level.rawValue),
            "label": .string(label),
            "message": .string("\(event.message)"),
        ]
        let merged = metadata.merging(event.metadata ?? [:]) { _, new in new }
        for (key, value) in merged.sorted(by: { $0.key < $1.key }) { line[key] = .string("\(value)") }
        let text = JSONValue.object(line).jsonString
        Self.output.withLock { _ in sayError(text) }
    }

    /// Keeps lines from different threads whole.
    private static let output = Mutex(())
}
