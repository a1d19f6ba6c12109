import Foundation

/// One approved answer of the bank's knowledge base, as imported from JSONL (one entry a
/// line): `id`, `title`, `text` (the approved content), optional `lang`, `questions` (sample
/// phrasings) and `tags`.
public struct KnowledgeEntry: Codable, Sendable, Equatable {
    public var id: String
    public var title: String
    public var text: String
    public var lang: String?
    public var questions: [String]
    public var tags: [String]

    public init(id: String, title: String, text: String, lang: String? = nil, questions: [String] = [], tags: [String] = []) {
        self.id = id
        self.title = title
        self.text = text
        self.lang = lang
        self.questions = questions
        self.tags = tags
    }

    enum CodingKeys: String, CodingKey { case id, title, text, lang, questions, tags }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(String.self, forKey: .id)
        title = try container.decode(String.self, forKey: .title)
        text = try container.decode(String.self, forKey: .text)
        lang = try container.decodeIfPresent(String.self, forKey: .lang)
        questions = try container.decodeIfPresent([String].self, forKey: .questions) ?? []
        tags = try container.decodeIfPresent([String].self, forKey: .tags) ?? []
    }

    /// Parses a JSONL file's contents; errors name the line.
    public static func parseJSONL(_ text: String) throws(KnowledgeError) -> [KnowledgeEntry] {
        var entries: [KnowledgeEntry] = []
        var seen: Set<String> = []
        for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            guard !trimmed.isEmpty else { continue }
            let entry: KnowledgeEntry
            do {
                entry = try JSONDecoder().decode(KnowledgeEntry.self, from: Data(trimmed.utf8))
            } catch {
                throw KnowledgeError(.invalidEntry, "line \(index + 1): \(error)")
            }
            guard !entry.id.isEmpty, !entry.text.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                throw KnowledgeError(.invalidEntry, "line \(index + 1): id and text must not be empty")
            }
            guard seen.insert(entry.id).inserted else { throw KnowledgeError(.invalidEntry, "line \(index + 1): id \(entry.id) appears twice") }
            entries.append(entry)
        }
        return entries
    }
}

/// The one error type of the knowledge base.
public struct KnowledgeError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }
        /// An imported line is not a valid entry.
        public static let invalidEntry = Code("invalidEntry")
        /// SQLite refused (open, migrate, write, read).
        public static let database = Code("database")
        /// An eval set line is not a valid case.
        public static let invalidInput = Code("invalidInput")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "KnowledgeError.\(code): \(message)" }
}
