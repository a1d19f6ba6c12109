import Crypto
import Foundation
import GRDB

/// The bank's knowledge base: approved entries in an SQLite file (GRDB, WAL) with an FTS5
/// index over their terms (``TermExtractor``: words, and character bigrams for Chinese).
/// Imports are one transaction; readers (running workers) see the old or the new version,
/// never a mix, and notice a new one through ``version()``.
public struct KnowledgeBase: Sendable {
    public let path: String
    let pool: DatabasePool

    /// Opens (creating and migrating if needed) the knowledge base at `path`.
    public init(path: String) throws(KnowledgeError) {
        self.path = path
        var configuration = Configuration()
        configuration.label = "sluice.knowledge"
        configuration.busyMode = .timeout(10)
        do {
            pool = try DatabasePool(path: path, configuration: configuration)
            try Self.migrator.migrate(pool)
        } catch {
            throw KnowledgeError(.database, "opening \(path): \(error)")
        }
    }

    private static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1: entries and their index") { db in
            try db.execute(sql: """
                CREATE TABLE kb_entries (
                    id TEXT PRIMARY KEY,
                    title TEXT NOT NULL,
                    text TEXT NOT NULL,
                    lang TEXT,
                    questions TEXT NOT NULL,  -- JSON array of strings
                    tags TEXT NOT NULL,       -- JSON array of strings
                    position INTEGER NOT NULL -- order in the imported file
                );
                -- One row per entry: its terms (space-separated) for full-text matching.
                CREATE VIRTUAL TABLE kb_terms USING fts5(id UNINDEXED, terms, tokenize = 'unicode61 remove_diacritics 0');
                CREATE TABLE kb_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
                """)
        }
        return migrator
    }

    /// What an import changed.
    public struct ImportSummary: Sendable, Equatable {
        public var version: String
        public var added: Int
        public var replaced: Int
        public var unchanged: Int
        public var removed: Int
    }

    /// Replaces the contents with `entries` (by id; entries the file no longer has are
    /// removed), in one transaction, and records the new knowledge version.
    @discardableResult
    public func importEntries(_ entries: [KnowledgeEntry]) throws(KnowledgeError) -> ImportSummary {
        let version = Self.version(of: entries)
        do {
            return try pool.write { db in
                let existing = try Dictionary(uniqueKeysWithValues: Self.fetchEntries(db).map { ($0.id, $0) })
                var summary = ImportSummary(version: version, added: 0, replaced: 0, unchanged: 0, removed: 0)
                let ids = Set(entries.map(\.id))
                summary.removed = existing.keys.filter { !ids.contains($0) }.count
                for entry in entries {
                    switch existing[entry.id] {
                    case nil: summary.added += 1
                    case entry?: summary.unchanged += 1
                    default: summary.replaced += 1
                    }
                }
                try db.execute(sql: "DELETE FROM kb_entries")
                try db.execute(sql: "DELETE FROM kb_terms")
                let encoder = JSONEncoder()
                for (position, entry) in entries.enumerated() {
                    try db.execute(
                        sql: "INSERT INTO kb_entries (id, title, text, lang, questions, tags, position) VALUES (?, ?, ?, ?, ?, ?, ?)",
                        arguments: [entry.id, entry.title, entry.text, entry.lang,
                                    String(decoding: try encoder.encode(entry.questions), as: UTF8.self),
                                    String(decoding: try encoder.encode(entry.tags), as: UTF8.self), position])
                    try db.execute(sql: "INSERT INTO kb_terms (id, terms) VALUES (?, ?)", arguments: [entry.id, Self.indexTerms(entry).joined(separator: " ")])
                }
                try db.execute(sql: "INSERT OR REPLACE INTO kb_meta (key, value) VALUES ('version', ?)", arguments: [version])
                return summary
            }
        } catch {
            throw KnowledgeError(.database, "importing into \(path): \(error)")
        }
    }

    /// Every entry, in the imported file's order.
    public func entries() throws(KnowledgeError) -> [KnowledgeEntry] {
        do {
            return try pool.read { try Self.fetchEntries($0) }
        } catch {
            throw KnowledgeError(.database, "reading \(path): \(error)")
        }
    }

    /// The knowledge version: `kb-` and the first 16 hex digits of the SHA-256 of the entries'
    /// canonical JSON, sorted by id ("kb-empty" before the first import).
    public func version() throws(KnowledgeError) -> String {
        do {
            // One statement is its own snapshot (asked once per request): no transaction around it.
            return try pool.unsafeRead { try String.fetchOne($0.cachedStatement(sql: "SELECT value FROM kb_meta WHERE key = 'version'")) } ?? "kb-empty"
        } catch {
            throw KnowledgeError(.database, "reading \(path): \(error)")
        }
    }

    /// The version `entries` would have once imported.
    public static func version(of entries: [KnowledgeEntry]) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let canonical = entries.sorted { $0.id < $1.id }.map { (try? encoder.encode($0)).map { String(decoding: $0, as: UTF8.self) } ?? "" }
        let digest = SHA256.hash(data: Data(canonical.joined(separator: "\n").utf8))
        return "kb-" + digest.prefix(8).map { String(format: "%02x", $0) }.joined()
    }

    /// The terms an entry is found by: its title, text and sample questions.
    static func indexTerms(_ entry: KnowledgeEntry) -> [String] {
        TermExtractor.terms(([entry.title, entry.text] + entry.questions).joined(separator: "\n"))
    }

    private static func fetchEntries(_ db: Database) throws -> [KnowledgeEntry] {
        let decoder = JSONDecoder()
        return try Row.fetchAll(db, sql: "SELECT id, title, text, lang, questions, tags FROM kb_entries ORDER BY position").map { row in
            KnowledgeEntry(
                id: row["id"], title: row["title"], text: row["text"], lang: row["lang"],
                questions: (try? decoder.decode([String].self, from: Data((row["questions"] as String).utf8))) ?? [],
                tags: (try? decoder.decode([String].self, from: Data((row["tags"] as String).utf8))) ?? [])
        }
    }
}
