import Foundation
import KafkaClient
import Logging
import Synchronization

/// One JSON object per line on standard error: `time` (RFC 3339, milliseconds, UTC), `level`,
/// `logger`, `message`, and the metadata's keys (e.g. `request_id`, `worker`). Values of keys
/// that name secrets (``SecretProperties``) are redacted. For log shippers (Loki, Elastic,
/// Cloud Logging) that index fields rather than parse text.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    public var metadataProvider: Logger.MetadataProvider?
    let label: String
    let write: @Sendable (String) -> Void

    public init(label: String, write: @escaping @Sendable (String) -> Void = JSONLogHandler.standardError) {
        self.label = label
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        var object: [String: Any] = [
            "time": Self.timestamp(Date()), "level": event.level.rawValue, "logger": label, "message": "\(event.message)",
        ]
        for (key, value) in merged where object[key] == nil {
            object[key] = SecretProperties.isSecret(key) ? "<redacted>" : Self.json(value)
        }
        guard let data = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]) else { return }
        write(String(decoding: data, as: UTF8.self))
    }

    static func json(_ value: Logger.MetadataValue) -> Any {
        switch value {
        case .string(let text): return text
        case .stringConvertible(let convertible): return convertible.description
        case .array(let values): return values.map(json)
        case .dictionary(let entries): return entries.mapValues(json)
        }
    }

    static func timestamp(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true, timeZone: .gmt))
    }

    /// Writes a line to standard error in one call (lines from several threads do not interleave).
    public static let standardError: @Sendable (String) -> Void = { line in
        let bytes = Array((line + "\n").utf8)
        bytes.withUnsafeBufferPointer { _ = Foundation.write(2, $0.baseAddress, $0.count) }
    }
}
