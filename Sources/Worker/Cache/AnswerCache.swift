import Crypto
import Foundation
import GRDB
import Synchronization

/// Automated answers, reusable by an identical later question: with greedy decoding (or a
/// seed the request chose), the same question and conversation against the same knowledge
/// version, model file, prompt template, answer mode and sampling parameters has one answer.
///
/// SQLite (WAL) beside the audit DB, shared by the workers of a host. Bounded by entries and
/// age (oldest removed first). A knowledge import or a model change needs no flush: both are
/// part of the key, so older entries are simply never asked for again and age out. Only
/// automated answers are stored; an escalated one never is.
public final class AnswerCache: Sendable {
    /// What a hit reuses: the answer and its decision, and the request that produced it.
    public struct Entry: Sendable, Equatable, Codable {
        public var requestID: String
        public var text: String
        public var confidence: Double
        public var parts: DecisionParts
        public var knowledgeVersion: String?
        public var passageIDs: [String]
        public var promptTokens: Int
        public var completionTokens: Int
    }

    public let path: String
    let pool: DatabasePool
    let maxEntries: Int
    let maxAge: TimeInterval
    private let stores = Mutex(0)

    public init(path: String, maxEntries: Int, maxAge: TimeInterval) throws {
        self.path = path
        self.maxEntries = maxEntries
        self.maxAge = maxAge
        var configuration = Configuration()
        configuration.busyMode = .timeout(5)
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        pool = try DatabasePool(path: path, configuration: configuration)
        try pool.write { db in
            try db.execute(sql: """
                CREATE TABLE IF NOT EXISTS answers (
                    key TEXT PRIMARY KEY NOT NULL,
                    entry BLOB NOT NULL,
                    created_at REAL NOT NULL
                );
                CREATE INDEX IF NOT EXISTS answers_by_age ON answers(created_at);
                """)
        }
    }

    /// The stored answer for `key`, if one younger than the maximum age exists.
    public func lookup(_ key: String, now: Date = Date()) throws -> Entry? {
        // One statement is its own snapshot: no transaction around it (asked once per request).
        try pool.unsafeRead { db in
            guard let row = try Row.fetchOne(db.cachedStatement(sql: "SELECT entry, created_at FROM answers WHERE key = ?"), arguments: [key]),
                  now.timeIntervalSince1970 - (row["created_at"] as Double) <= maxAge else { return nil }
            return try decoded(row["entry"] as Data)
        }
    }

    /// Entries decoded before, by their stored bytes: a hit still reads its row (the row is
    /// what says the entry exists, is young enough and was not cleared), but a popular
    /// answer's JSON is decoded once, not per hit (JSONDecoder was 8 % of a cache-hit drain).
    private let decodedEntries = Mutex<[Data: Entry]>([:])

    private func decoded(_ data: Data) throws -> Entry {
        if let entry = decodedEntries.withLock({ $0[data] }) { return entry }
        let entry = try JSONDecoder().decode(Entry.self, from: data)
        decodedEntries.withLock { entries in
            if entries.count >= 1_024 { entries.removeAll(keepingCapacity: true) }
            entries[data] = entry
        }
        return entry
    }

    /// Stores an automated answer (the first one for a key stays: later ones are the same).
    /// Every 256 stores, entries past the age and beyond the bound are removed, oldest first.
    public func store(_ entry: Entry, for key: String, now: Date = Date()) throws {
        let data = try JSONEncoder().encode(entry)
        let prune = stores.withLock { count -> Bool in
            count += 1
            return count % 256 == 1
        }
        try pool.write { db in
            try db.execute(sql: "INSERT OR IGNORE INTO answers (key, entry, created_at) VALUES (?, ?, ?)",
                           arguments: [key, data, now.timeIntervalSince1970])
            if prune { try self.prune(db, now: now) }
        }
    }

    private func prune(_ db: Database, now: Date) throws {
        try db.execute(sql: "DELETE FROM answers WHERE created_at < ?", arguments: [now.timeIntervalSince1970 - maxAge])
        let count = try Int.fetchOne(db, sql: "SELECT count(*) FROM answers") ?? 0
        if count > maxEntries {
            try db.execute(sql: """
                DELETE FROM answers WHERE key IN (SELECT key FROM answers ORDER BY created_at LIMIT ?)
                """, arguments: [count - maxEntries])
        }
    }

    /// Entries stored (for tests and `sluice` diagnostics).
    public func count() throws -> Int {
        try pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM answers") ?? 0 }
    }

    /// What the cache holds: entries, the oldest and newest entry's time, and per request
    /// whose answer is reused, how many keys reuse it (most first, at most `top`).
    public func stats(top: Int = 10) throws -> (entries: Int, oldest: Date?, newest: Date?, answers: [(requestID: String, keys: Int)]) {
        try pool.read { db in
            let row = try Row.fetchOne(db, sql: "SELECT count(*) AS n, min(created_at) AS oldest, max(created_at) AS newest FROM answers")
            let answers = try Row.fetchAll(db, sql: """
                SELECT json_extract(CAST(entry AS TEXT), '$.requestID') AS id, count(*) AS keys FROM answers
                GROUP BY id ORDER BY keys DESC, id LIMIT ?
                """, arguments: [top]).map { (requestID: ($0["id"] as String?) ?? "?", keys: $0["keys"] as Int) }
            return (row?["n"] ?? 0, (row?["oldest"] as Double?).map(Date.init(timeIntervalSince1970:)),
                    (row?["newest"] as Double?).map(Date.init(timeIntervalSince1970:)), answers)
        }
    }

    /// Removes the entries that reuse `requestID`'s answer (an answer found wrong after it
    /// went out must not be repeated), or every entry when nil. Returns how many went.
    @discardableResult
    public func clear(requestID: String? = nil) throws -> Int {
        try pool.write { db in
            if let requestID {
                try db.execute(sql: "DELETE FROM answers WHERE json_extract(CAST(entry AS TEXT), '$.requestID') = ?", arguments: [requestID])
            } else {
                try db.execute(sql: "DELETE FROM answers")
            }
            return db.changesCount
        }
    }

    // MARK: - The key

    /// What decides an answer, besides the question.
    public struct Context: Sendable {
        public var modelSHA256: String
        public var templateVersion: String
        public var answerMode: String
        public var knowledgeVersion: String?

        public init(modelSHA256: String, templateVersion: String, answerMode: String, knowledgeVersion: String?) {
            self.modelSHA256 = modelSHA256
            self.templateVersion = templateVersion
            self.answerMode = answerMode
            self.knowledgeVersion = knowledgeVersion
        }
    }

    /// The cache key of `request`, or nil when its answer is not determined by its inputs
    /// (sampled without a seed of its own).
    public static func key(_ request: InferenceRequest, context: Context) -> String? {
        guard request.temperature == 0 || request.seedGiven else { return nil }
        var parts: [String] = [
            "v1", context.modelSHA256, context.templateVersion, context.answerMode, context.knowledgeVersion ?? "-",
            "max_tokens=\(request.maxTokens)", "temperature=\(request.temperature)", "top_p=\(request.topP)",
            request.temperature == 0 ? "greedy" : "seed=\(request.seed)",
        ]
        if let messages = request.messages {
            parts += messages.map { "\($0.role)\u{1F}\(normalized($0.content))" }
        } else {
            parts.append(normalized(request.prompt))
        }
        let digest = SHA256.hash(data: Data(parts.joined(separator: "\u{1E}").utf8))
        return hex(digest)
    }

    /// Lowercase hex (String(format:) per byte was 10 % of a cache-hit drain).
    static func hex(_ bytes: some Sequence<UInt8>) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(64)
        for byte in bytes {
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }

    /// A question as the cache compares it: Unicode compatibility forms folded (full-width
    /// letters, digits and punctuation as their ASCII forms), runs of white space as one
    /// space, no leading or trailing space. Case is kept: the model sees it.
    public static func normalized(_ text: String) -> String {
        text.precomposedStringWithCompatibilityMapping
            .split(whereSeparator: { $0.isWhitespace })
            .joined(separator: " ")
    }
}
