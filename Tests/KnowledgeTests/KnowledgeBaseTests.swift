import Foundation
import Knowledge
import Testing

/// The knowledge base on a real SQLite file: import semantics, versions, and retrieval of
/// English and Chinese paraphrases from the shipped sample (`Config/knowledge-base.jsonl`).
@Suite("Knowledge base: import and retrieval")
struct KnowledgeBaseTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func temporaryBase() throws -> KnowledgeBase {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-kb-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return try KnowledgeBase(path: directory.appendingPathComponent("knowledge.sqlite").path)
    }

    static func sample() throws -> KnowledgeBase {
        let base = try temporaryBase()
        let text = try String(contentsOf: root.appendingPathComponent("Config/knowledge-base.jsonl"), encoding: .utf8)
        try base.importEntries(KnowledgeEntry.parseJSONL(text))
        return base
    }

    @Test("re-import replaces by id and removes what the file no longer has; the version follows the contents")
    func reimport() throws {
        let base = try Self.temporaryBase()
        #expect(try base.version() == "kb-empty")
        let a = KnowledgeEntry(id: "a", title: "A", text: "The fee is 10 yuan.")
        let b = KnowledgeEntry(id: "b", title: "B", text: "Hotline 95588.")
        let first = try base.importEntries([a, b])
        #expect(first.added == 2 && first.version == KnowledgeBase.version(of: [b, a]), "the version does not depend on the order")
        var changed = a
        changed.text = "The fee is 12 yuan."
        let second = try base.importEntries([changed])
        #expect(second.replaced == 1 && second.removed == 1 && second.added == 0)
        #expect(second.version != first.version)
        #expect(try base.entries() == [changed])
        #expect(try base.version() == second.version)
        #expect(try base.search("fee yuan").map(\.entry.id) == ["a"])
        #expect(try base.search("hotline").isEmpty, "a removed entry is not retrieved")
        let third = try base.importEntries([changed])
        #expect(third.unchanged == 1 && third.version == second.version)
    }

    @Test("malformed lines are refused with their line number; duplicate ids too")
    func parsing() {
        #expect(throws: KnowledgeError.self) { try KnowledgeEntry.parseJSONL(#"{"id":"a","title":"A","text":"x"}"# + "\n" + "{not json") }
        do {
            _ = try KnowledgeEntry.parseJSONL(#"{"id":"a","title":"A","text":"x"}"# + "\n" + #"{"id":"a","title":"B","text":"y"}"#)
            Issue.record("a duplicate id was accepted")
        } catch {
            #expect(error.message.contains("line 2") && error.message.contains("twice"))
        }
        #expect(throws: KnowledgeError.self) { try KnowledgeEntry.parseJSONL(#"{"id":"a","title":"A"}"#) }
    }

    @Test("paraphrases in English and Chinese retrieve their entry first", arguments: [
        ("How much money can I send per day through internet banking?", "transfer-limit-online"),
        ("每天网上转账最多能转多少", "transfer-limit-online-zh"),
        ("My card got stolen, what now?", "lost-card"),
        ("信用卡丢失了怎么挂失", "lost-card-zh"),
        ("Are branches open on Saturdays?", "branch-hours"),
        ("周末网点营业时间", "branch-hours-zh"),
        ("interest rate for a three year time deposit", "deposit-rates"),
        ("三年期定期存款的利率", "deposit-rates-zh"),
        ("annual fee for the gold credit card", "gold-card-fee"),
        ("ATM取款一天的限额", "atm-withdrawal-zh"),
        ("fee for sending money abroad by wire", "wire-fee"),
        ("repaying a mortgage early", "mortgage-prepayment"),
    ])
    func paraphrases(question: String, expected: String) throws {
        let passages = try Self.sample().search(question)
        #expect(passages.first?.entry.id == expected, "\(question): \(passages.map { ($0.entry.id, $0.coverage) })")
    }

    @Test("questions the knowledge base cannot answer retrieve nothing above the threshold", arguments: [
        "What is the weather like in Paris tomorrow?", "How do I buy shares of Apple?", "Tell me a joke",
        "股票怎么买？", "今天天气怎么样", "Who won the football match?",
    ])
    func unrelated(question: String) throws {
        let passages = try Self.sample().search(question)
        #expect(passages.isEmpty, "\(question): \(passages.map { ($0.entry.id, $0.coverage) })")
    }

    @Test("terms: English words without stop words, Chinese character bigrams, numbers without separators")
    func terms() {
        #expect(TermExtractor.terms("What is the daily limit?") == ["daily", "limit"])
        #expect(TermExtractor.terms("opens opening opened") == ["open", "open", "open"])
        #expect(TermExtractor.terms("charges charge fees") == ["charg", "charg", "fee"])
        #expect(TermExtractor.terms("转账限额") == ["转账", "账限", "限额"])
        #expect(TermExtractor.terms("50,000 yuan") == ["50000", "yuan"])
        #expect(TermExtractor.terms("call 95588 或 拨打") == ["call", "95588", "或", "拨打"])
    }
}
