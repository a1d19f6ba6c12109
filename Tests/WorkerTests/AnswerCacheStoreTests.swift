import Crypto
import Foundation
import Testing
@testable import Worker

/// The answer cache's store without a broker: what the hot path's shortcuts (a memo of
/// decoded entries, hand-written hex keys) must not change.
@Suite("Answer cache store (unit, real SQLite file)")
struct AnswerCacheStoreTests {
    static func entry(_ id: String, _ text: String) -> AnswerCache.Entry {
        .init(requestID: id, text: text, confidence: 0.9, parts: DecisionParts(retrieval: 1, generation: 0.9), knowledgeVersion: "kb-1",
              passageIDs: ["p1"], promptTokens: 10, completionTokens: 5)
    }

    @Test("a hit decoded before is still read from its row: a cleared or aged-out entry is never served from the memo")
    func memoNeverOutlivesTheRow() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("cache-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: directory) }
        let cache = try AnswerCache(path: directory.appendingPathComponent("answer-cache.sqlite").path, maxEntries: 100, maxAge: 60)
        let stored = Self.entry("r1", "Call 95555.")
        try cache.store(stored, for: "k1")
        #expect(try cache.lookup("k1") == stored)
        #expect(try cache.lookup("k1") == stored, "the second hit (from the memo) is the same entry")
        #expect(try cache.lookup("k1", now: Date().addingTimeInterval(120)) == nil, "aged out")
        #expect(try cache.clear(requestID: "r1") == 1)
        #expect(try cache.lookup("k1") == nil, "cleared: the memo does not bring it back")
        // The same key stored again with another answer gives the new answer.
        let other = Self.entry("r2", "Visit a branch.")
        try cache.store(other, for: "k1")
        #expect(try cache.lookup("k1") == other)
    }

    @Test("keys are the request's SHA-256 in lowercase hex, as before")
    func hexKeys() {
        var bytes: [UInt8] = (0...255).map(UInt8.init)
        bytes += Array(SHA256.hash(data: Data("a".utf8)))
        #expect(AnswerCache.hex(bytes) == bytes.map { String(format: "%02x", $0) }.joined())
        #expect(AnswerCache.hex(SHA256.hash(data: Data("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
    }
}
