import Foundation
import KafkaClient
import Yams

/// Builds a ``SluiceConfiguration`` from defaults, a YAML file, `SLUICE_*` environment
/// variables and flag overrides, in that order, and validates it.
///
/// Unknown keys in the file are errors (a typo must not silently fall back to a default),
/// except under free-form maps such as `kafka.properties`.
public struct ConfigurationLoader: Sendable {
    public var environment: [String: String]

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
    }

    /// - Parameters:
    ///   - file: a YAML file; nil uses `Config/sluice.yaml` when it exists, else defaults.
    ///   - overrides: dotted keys set by command-line flags, e.g. `["kafka.brokers": "h:9092"]`.
    public func load(file: String?, overrides: [String: String] = [:]) throws -> SluiceConfiguration {
        var tree = try Self.defaultsTree()
        let path = file ?? (FileManager.default.fileExists(atPath: "Config/sluice.yaml") ? "Config/sluice.yaml" : nil)
        if let path {
            guard let text = FileManager.default.contents(atPath: path).flatMap({ String(data: $0, encoding: .utf8) }) else {
                throw ConfigurationError(key: path, message: "cannot read the configuration file")
            }
            let loaded: Any?
            do { loaded = try Yams.load(yaml: text) } catch {
                throw ConfigurationError(key: path, message: "not valid YAML: \(error)")
            }
            if let loaded {
                guard let mapping = loaded as? [String: Any] else {
                    throw ConfigurationError(key: path, message: "the top level must be a mapping")
                }
                try Self.merge(mapping, into: &tree, path: [])
            }
        }
        for leaf in Self.leaves(of: tree) {
            let name = Self.environmentVariable(for: leaf)
            if let value = environment[name] { try Self.set(value, at: leaf, in: &tree, source: name) }
        }
        for (key, value) in overrides.sorted(by: { $0.key < $1.key }) {
            try Self.set(value, at: key.split(separator: ".").map(String.init), in: &tree, source: "--\(key)")
        }
        let configuration: SluiceConfiguration
        do {
            configuration = try YAMLDecoder().decode(SluiceConfiguration.self, from: try Yams.dump(object: tree))
        } catch let error as DecodingError {
            throw ConfigurationError(decoding: error)
        } catch {
            throw ConfigurationError(key: path ?? "configuration", message: "\(error)")
        }
        try configuration.validate()
        return configuration
    }

    /// The variable that overrides a key: `SLUICE_` + the key path in upper case joined by `_`
    /// (`["kafka", "group_id"]` → `SLUICE_KAFKA_GROUP_ID`).
    public static func environmentVariable(for path: [String]) -> String {
        "SLUICE_" + path.map { $0.uppercased() }.joined(separator: "_")
    }

    /// The defaults as a tree of YAML values (dictionaries, arrays, scalars).
    public static func defaultsTree() throws -> [String: Any] {
        let yaml = try YAMLEncoder().encode(SluiceConfiguration())
        return try Yams.load(yaml: yaml) as? [String: Any] ?? [:]
    }

    /// Every settable key path (free-form maps count as one leaf).
    public static func leaves(of tree: [String: Any], prefix: [String] = []) -> [[String]] {
        tree.keys.sorted().flatMap { key -> [[String]] in
            if let child = tree[key] as? [String: Any], !child.isEmpty {
                return leaves(of: child, prefix: prefix + [key])
            }
            return [prefix + [key]]
        }
    }

    private static func merge(_ source: [String: Any], into tree: inout [String: Any], path: [String]) throws {
        for (key, value) in source {
            let keyPath = (path + [key]).joined(separator: ".")
            guard let existing = tree[key] else {
                throw ConfigurationError(key: keyPath, message: "unknown key (see Config/sluice.yaml for the keys)")
            }
            if var child = existing as? [String: Any], !child.isEmpty {
                guard let sourceChild = value as? [String: Any] else {
                    throw ConfigurationError(key: keyPath, message: "must be a mapping")
                }
                try merge(sourceChild, into: &child, path: path + [key])
                tree[key] = child
            } else {
                tree[key] = value
            }
        }
    }

    /// Sets a leaf from a string: lists split on commas, maps from `k=v,k=v`, scalars as YAML.
    private static func set(_ text: String, at path: [String], in tree: inout [String: Any], source: String) throws {
        guard let head = path.first else { return }
        if path.count == 1 {
            guard let existing = tree[head] else {
                throw ConfigurationError(key: source, message: "unknown key \(head)")
            }
            switch existing {
            case is [Any]:
                tree[head] = text.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) }
            case is [String: Any]:
                var map: [String: String] = [:]
                for pair in text.split(separator: ",") {
                    let parts = pair.split(separator: "=", maxSplits: 1).map(String.init)
                    guard parts.count == 2 else {
                        throw ConfigurationError(key: source, message: "expected key=value pairs, got '\(pair)'")
                    }
                    map[parts[0]] = parts[1]
                }
                tree[head] = map
            case is String:
                tree[head] = text
            default:
                tree[head] = (try? Yams.load(yaml: text)) ?? text
            }
            return
        }
        guard var child = tree[head] as? [String: Any] else {
            throw ConfigurationError(key: source, message: "unknown key \(path.joined(separator: "."))")
        }
        try set(text, at: Array(path.dropFirst()), in: &child, source: source)
        tree[head] = child
    }
}

extension ConfigurationError {
    /// Names the key and the expected type instead of the decoder's internal wording.
    init(decoding error: DecodingError) {
        func key(_ path: [any CodingKey]) -> String { path.map(\.stringValue).joined(separator: ".") }
        switch error {
        case .typeMismatch(let type, let context), .valueNotFound(let type, let context):
            self.init(key: key(context.codingPath), message: "expected a value of type \(type)")
        case .keyNotFound(let missing, let context):
            self.init(key: key(context.codingPath + [missing]), message: "missing")
        case .dataCorrupted(let context):
            self.init(key: key(context.codingPath), message: context.debugDescription)
        @unknown default:
            self.init(key: "configuration", message: "\(error)")
        }
    }
}

extension SluiceConfiguration {
    /// The configuration as YAML with passwords and keys replaced by `<redacted>` (for `sluice config check`):
    /// the SASL password, the audit keys, and every `kafka.properties` entry that names a secret
    /// (``SecretProperties``: `ssl.key.password`, `ssl.key.pem`, `sasl.oauthbearer.client.secret`, …).
    public func redactedYAML() throws -> String {
        try YAMLEncoder().encode(redacted())
    }

    /// A copy with every secret value replaced by `<redacted>`.
    public func redacted() -> SluiceConfiguration {
        var copy = self
        for secret in [\SluiceConfiguration.kafka.saslPassword, \.audit.pseudonymKey, \.audit.sealingKey, \.audit.signingKey]
        where !copy[keyPath: secret].isEmpty {
            copy[keyPath: secret] = "<redacted>"
        }
        for (name, value) in copy.kafka.properties { copy.kafka.properties[name] = SecretProperties.redacted(name, value) }
        return copy
    }
}
