import Foundation
import Testing

/// `sluice eval` end to end on the real model, and `sluice kb` on a real SQLite file.
@Suite("Integration: sluice eval and sluice kb command line", .serialized)
struct EvalCLITests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let knowledge = root.appendingPathComponent("Config/knowledge-base.jsonl").path
    static let model = root.appendingPathComponent("models/gemma-3-270m-q4_k_m.gguf").path

    static func temporary(_ name: String) throws -> URL {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-eval-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent(name)
    }

    /// Six cases of the shipped set: four answerable (English and Chinese), one the knowledge
    /// base cannot answer, one request for a human.
    static func smallSet() throws -> String {
        let wanted = ["en-hours-1", "zh-deposit-1", "en-wire-1", "en-goldfee-1", "oos-en-1", "human-zh-1"]
        let lines = try String(contentsOf: root.appendingPathComponent("Config/eval-set.jsonl"), encoding: .utf8)
            .split(separator: "\n").filter { line in wanted.contains { line.contains("\"id\":\"\($0)\"") } }
        #expect(lines.count == wanted.count)
        let file = try temporary("set.jsonl")
        try lines.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }

    @Test("eval runs a small set through the worker's path with the real model; the gate fails on a broken template")
    func evalAndGate() async throws {
        let set = try Self.smallSet()
        let baseline = try Self.temporary("baseline.json")
        let report = try Self.temporary("report.html")
        let good = try await CLITests.sluice(["eval", "--model", Self.model, "--kb", Self.knowledge, "--set", set, "--json", baseline.path, "--report", report.path])
        #expect(good.status == 0, "\(good.stdout)\(good.stderr)")
        let file = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: baseline)) as? [String: Any])
        let summary = try #require(file["summary"] as? [String: Any])
        #expect(summary["cases"] as? Int == 6 && summary["must_escalate"] as? Int == 2)
        #expect(summary["escalation_recall"] as? Double == 1, "\(summary)")
        #expect(summary["wrong_automated"] as? Int == 0, "\(good.stdout)")
        #expect((summary["automation_rate"] as? Double ?? 0) >= 0.75, "\(good.stdout)")
        let cases = try #require(file["cases"] as? [[String: Any]])
        let hours = try #require(cases.first { $0["id"] as? String == "en-hours-1" })
        #expect((hours["answer"] as? String)?.contains("12:00") == true && hours["passages"] as? [String] == ["branch-hours"])
        let unknown = try #require(cases.first { $0["id"] as? String == "oos-en-1" })
        #expect(unknown["escalate"] as? Bool == true && unknown["reasons"] as? [String] == ["no_knowledge"])
        let html = try String(contentsOf: report, encoding: .utf8)
        #expect(html.contains("<svg") && html.contains("Reliability"))

        // The question buried in a story: the model no longer answers it from the passages.
        let broken = "Here is some text to ignore: {passages} {question}\n\n\n\nChapter 1\n\nIt was a dark and stormy night"
        let gated = try await CLITests.sluice(["eval", "--model", Self.model, "--kb", Self.knowledge, "--set", set, "--template", broken, "--baseline", baseline.path])
        #expect(gated.status == 1, "\(gated.stdout)\(gated.stderr)")
        #expect(gated.stdout.contains("GATE FAILED: automation dropped"), "\(gated.stdout)")
    }

    @Test("eval --prompts writes the worker's grounded prompt for each case without running the model")
    func prompts() async throws {
        let set = try Self.smallSet()
        let output = try Self.temporary("prompts.jsonl")
        let result = try await CLITests.sluice(["eval", "--model", Self.model, "--kb", Self.knowledge, "--set", set, "--answer-mode", "generative",
                                                "--prompts", output.path])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(!result.stdout.contains("automation"), "the model ran: \(result.stdout)")
        let lines = try String(contentsOf: output, encoding: .utf8).split(separator: "\n")
            .map { try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]) }
        #expect(lines.count == 6)
        let hours = try #require(lines.first { ($0["question"] as? String)?.contains("open") == true }, "\(lines)")
        // The passage the worker retrieves for the question is in the prompt, with the generative stop.
        #expect((hours["prompt"] as? String)?.contains("12:00") == true && hours["needs_model"] as? Bool == true, "\(hours)")
        #expect(hours["stop"] as? [String] == ["\n"])
        // The question the knowledge base cannot answer is escalated without the model.
        #expect(lines.contains { $0["needs_model"] as? Bool == false }, "\(lines)")
    }

    @Test("kb import, search, list and export on a real SQLite file; a re-import reports what changed")
    func knowledgeBase() async throws {
        let db = try Self.temporary("knowledge.sqlite").path
        let imported = try await CLITests.sluice(["kb", "import", Self.knowledge, "--db", db])
        #expect(imported.status == 0 && imported.stdout.contains("imported 22 entries: 22 added"), "\(imported.stdout)\(imported.stderr)")
        let search = try await CLITests.sluice(["kb", "search", "网点周六几点开门", "--db", db])
        #expect(search.status == 0 && search.stdout.split(separator: "\n").first?.contains("branch-hours-zh") == true, "\(search.stdout)")
        let again = try await CLITests.sluice(["kb", "import", Self.knowledge, "--db", db])
        #expect(again.stdout.contains("22 unchanged, 0 removed"), "\(again.stdout)")
        let export = try await CLITests.sluice(["kb", "export", "--db", db])
        #expect(export.stdout.split(separator: "\n").count == 22)
        let bad = try Self.temporary("bad.jsonl")
        try "{\"id\":\"a\",\"title\":\"A\",\"text\":\"x\"}\n{broken".write(to: bad, atomically: true, encoding: .utf8)
        let refused = try await CLITests.sluice(["kb", "import", bad.path, "--db", db])
        #expect(refused.status != 0 && refused.stderr.contains("line 2"), "\(refused.stderr)")
    }
}
