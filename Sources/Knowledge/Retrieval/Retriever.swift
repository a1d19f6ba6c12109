import Foundation
import GRDB

/// A passage retrieved for a question, with how well it matches.
public struct RetrievedPassage: Sendable, Equatable {
    public var entry: KnowledgeEntry
    /// The share of the question's distinct terms the entry contains, in [0, 1].
    public var coverage: Double
    /// FTS5's bm25 rank (lower is better), for ordering passages of equal coverage.
    public var rank: Double

    public init(entry: KnowledgeEntry, coverage: Double, rank: Double) {
        self.entry = entry
        self.coverage = coverage
        self.rank = rank
    }
}

/// What one retrieval saw: the knowledge version it read and the passages it found, taken
/// in one read transaction (an import in between cannot mix two versions).
public struct Retrieval: Sendable, Equatable {
    public var version: String
    public var passages: [RetrievedPassage]

    public init(version: String, passages: [RetrievedPassage]) {
        self.version = version
        self.passages = passages
    }

    /// The best passage's coverage (0 when nothing was found).
    public var topCoverage: Double { passages.first?.coverage ?? 0 }
}

extension KnowledgeBase {
    /// ``search(_:limit:minimumCoverage:)`` and the version it read, in one snapshot.
    public func retrieve(_ question: String, limit: Int = 3, minimumCoverage: Double = 0.35) throws(KnowledgeError) -> Retrieval {
        do {
            return try pool.read { db in
                let version = try String.fetchOne(db, sql: "SELECT value FROM kb_meta WHERE key = 'version'") ?? "kb-empty"
                return Retrieval(version: version, passages: try Self.search(db, question, limit: limit, minimumCoverage: minimumCoverage))
            }
        } catch let error as KnowledgeError {
            throw error
        } catch {
            throw KnowledgeError(.database, "searching \(path): \(error)")
        }
    }

    /// The best `limit` entries for `question`: candidates sharing any term (FTS5 OR query),
    /// ordered by coverage — the share of the question's distinct terms the entry has — then
    /// by bm25. Passages below `minimumCoverage` are left out, so an unrelated question finds
    /// nothing.
    public func search(_ question: String, limit: Int = 3, minimumCoverage: Double = 0.35) throws(KnowledgeError) -> [RetrievedPassage] {
        try retrieve(question, limit: limit, minimumCoverage: minimumCoverage).passages
    }

    static func search(_ db: Database, _ question: String, limit: Int, minimumCoverage: Double) throws -> [RetrievedPassage] {
        let terms = Array(Set(TermExtractor.terms(question))).sorted()
        guard !terms.isEmpty, limit > 0 else { return [] }
        // Every term quoted (FTS5 string syntax), joined by OR.
        let query = terms.map { "\"" + $0.replacingOccurrences(of: "\"", with: "\"\"") + "\"" }.joined(separator: " OR ")
        let rows = try Row.fetchAll(db, sql: """
                    SELECT e.id, e.title, e.text, e.lang, e.questions, e.tags, t.terms, bm25(kb_terms) AS rank
                    FROM kb_terms t JOIN kb_entries e ON e.id = t.id
                    WHERE kb_terms MATCH ? ORDER BY rank LIMIT 50
                    """, arguments: [query])
            let decoder = JSONDecoder()
            let passages = rows.map { row -> RetrievedPassage in
                let entryTerms = Set((row["terms"] as String).split(separator: " ").map(String.init))
                let matched = terms.filter(entryTerms.contains).count
                let entry = KnowledgeEntry(
                    id: row["id"], title: row["title"], text: row["text"], lang: row["lang"],
                    questions: (try? decoder.decode([String].self, from: Data((row["questions"] as String).utf8))) ?? [],
                    tags: (try? decoder.decode([String].self, from: Data((row["tags"] as String).utf8))) ?? [])
                return RetrievedPassage(entry: entry, coverage: Double(matched) / Double(terms.count), rank: row["rank"])
            }
            return Array(passages.filter { $0.coverage >= minimumCoverage }
                .sorted { $0.coverage != $1.coverage ? $0.coverage > $1.coverage : $0.rank < $1.rank }
                .prefix(limit))
    }
}
