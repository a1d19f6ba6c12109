import Foundation

/// The operator's configuration reference, generated from the commented `Config/sluice.yaml`
/// (whose keys and values a test holds equal to ``SluiceConfiguration``'s defaults).
///
/// Each key's description is the comment block just above it; a key without one shares the
/// description of the key before it (the file documents related keys together).
public enum ConfigurationReference {
    public struct Entry: Equatable, Sendable {
        /// Dotted key, e.g. `kafka.group_id`.
        public var key: String
        /// The default as written in the file (YAML).
        public var defaultValue: String
        /// The environment variable that overrides it.
        public var environmentVariable: String
        public var description: String
    }

    /// The leaf keys of the file, in file order.
    public static func entries(yaml text: String) -> [Entry] {
        var entries: [Entry] = []
        var sections: [String] = []
        var comment: [String] = []
        var previousDescription = ""
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = String(rawLine)
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty {
                comment = []
                continue
            }
            if trimmed.hasPrefix("#") {
                comment.append(trimmed.dropFirst().trimmingCharacters(in: .whitespaces))
                continue
            }
            let indent = line.prefix(while: { $0 == " " }).count / 2
            guard let colon = trimmed.firstIndex(of: ":") else { continue }
            let key = String(trimmed[..<colon])
            let value = trimmed[trimmed.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            sections = Array(sections.prefix(indent))
            if value.isEmpty {  // a section such as `kafka:`
                sections.append(key)
                comment = []
                continue
            }
            let path = sections + [key]
            let description = comment.isEmpty ? previousDescription : comment.joined(separator: " ")
            entries.append(Entry(
                key: path.joined(separator: "."),
                defaultValue: value,
                environmentVariable: ConfigurationLoader.environmentVariable(for: path),
                description: description))
            previousDescription = description
            comment = []
        }
        return entries
    }

    /// A Markdown table of ``entries(yaml:)``.
    public static func markdown(yaml text: String) -> String {
        func cell(_ text: String) -> String { text.replacingOccurrences(of: "|", with: "\\|") }
        var lines = ["| Key | Default | Environment variable | Meaning |", "|---|---|---|---|"]
        for entry in entries(yaml: text) {
            lines.append("| `\(entry.key)` | `\(cell(entry.defaultValue))` | `\(entry.environmentVariable)` | \(cell(entry.description)) |")
        }
        return lines.joined(separator: "\n") + "\n"
    }
}
