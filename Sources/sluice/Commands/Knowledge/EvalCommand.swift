import ArgumentParser
import Foundation
import Inference
import Knowledge
import Worker

/// `sluice eval`: answer quality as the worker serves it, and the gate before a rollout.
struct EvalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Run a labelled question set through the worker's answer path and gate a rollout on the result.",
        discussion: """
            Imports --kb into a fresh knowledge base (or uses knowledge.db when --kb is not given), runs every case of --set
            through the same retrieval, grounded prompt, batched generation and escalation policy as `sluice run`, and prints
            the automation rate, the accuracy of automated answers, escalation recall, the reasons and latency. Exits 1 when a
            must-escalate case was answered, or when accuracy or automation dropped more than --max-drop below --baseline.
            """
    )

    @Option(help: "Configuration file (default: Config/sluice.yaml when present).") var config: String?
    @Option(help: "Knowledge base to evaluate (JSONL); imported into a temporary database.") var kb: String?
    @Option(help: "The eval set (JSONL: question, expect {contains: [...]} or {escalate: true}).") var set: String
    @Option(help: "GGUF model (overrides worker.model).") var model: String?
    @Option(name: .customLong("answer-mode"), help: "extractive, generative or whole_knowledge_base (overrides knowledge.answer_mode).") var answerMode: String?
    @Option(help: "Prompt template (overrides knowledge.template).") var template: String?
    @Option(help: "Write the HTML report here.") var report: String?
    @Option(help: "Write the summary and every case as JSON here.") var json: String?
    @Option(help: "A previous --json file to compare with.") var baseline: String?
    @Option(help: "Write what the model is asked for each case as JSON lines (question, prompt, stop, needs_model) here, and exit without running the model (for side-by-side benchmarks).")
    var prompts: String?
    @Option(name: .customLong("max-drop"), help: "Largest accepted drop of accuracy or automation against --baseline (absolute).") var maxDrop = 0.05

    func run() async throws {
        var overrides: [String: String] = [:]
        if let model { overrides["worker.model"] = model }
        if let answerMode { overrides["knowledge.answer_mode"] = answerMode }
        if let template { overrides["knowledge.template"] = template }
        let cases = try EvalCase.parseJSONL(String(contentsOfFile: set, encoding: .utf8))
        let baselineFile = try baseline.map { try JSONDecoder().decode(EvalReportFile.self, from: Data(contentsOf: URL(fileURLWithPath: $0))) }
        var temporary: URL?
        if let kb {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-eval-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let path = directory.appendingPathComponent("knowledge.sqlite").path
            try KnowledgeBase(path: path).importEntries(KnowledgeEntry.parseJSONL(String(contentsOfFile: kb, encoding: .utf8)))
            overrides["knowledge.db"] = path
            temporary = directory
        }
        defer { if let temporary { try? FileManager.default.removeItem(at: temporary) } }
        let configuration = try CommonOptions.load(file: config, overrides: overrides)
        guard !configuration.knowledge.db.isEmpty else { throw ValidationError("sluice eval needs a knowledge base: --kb FILE or knowledge.db") }
        ComputePool.reuseLargeAllocations()
        if configuration.worker.threads > 0 { ComputePool.setThreads(configuration.worker.threads) }
        let backend = try ModelBackend(path: configuration.worker.model, expectedSHA256: configuration.worker.modelSha256, maxContext: configuration.worker.maxContext,
                                           prefixCacheBytes: configuration.worker.prefixCacheMb << 20)
        let pipeline = try AnswerPipeline(configuration: configuration, backend: backend)
        let worker = configuration.worker
        if let prompts {
            let evaluator = Evaluator(pipeline: pipeline, scheduler: ContinuousBatchScheduler(backend: backend, settings: .init(worker)), limits: RequestLimits(configuration))
            try Self.writePrompts(cases.enumerated().map { try ($0.element.question, evaluator.plan($0.element, index: $0.offset)) }, to: prompts)
            return
        }
        let scheduler = ContinuousBatchScheduler(backend: backend, settings: .init(worker, queueCapacity: max(worker.queueCapacity, cases.count)))
        scheduler.start()
        let started = Date()
        let results: [EvalResult]
        do {
            results = try await Evaluator(pipeline: pipeline, scheduler: scheduler, limits: RequestLimits(configuration)).run(cases)
        } catch {
            scheduler.stop()
            throw error
        }
        scheduler.stop()
        let elapsed = Date().timeIntervalSince(started)
        let summary = EvalSummary(results)
        let file = EvalReportFile(
            summary: summary, knowledgeVersion: try pipeline.knowledge?.version() ?? "none",
            configuration: [
                "model": "\(backend.identity.name) \(backend.identity.quantization) \(backend.identity.sha256.prefix(12))",
                "answer_mode": configuration.knowledge.answerMode, "passages": "\(configuration.knowledge.passages)",
                "min_coverage": "\(configuration.knowledge.minCoverage)", "min_support": "\(configuration.knowledge.minSupport)",
                "escalation_threshold": "\(worker.escalationThreshold)", "prompt_template_version": pipeline.templateVersion,
                "set": set,
            ],
            cases: results)
        print(Self.text(summary, results: results, elapsed: elapsed))
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(file).write(to: URL(fileURLWithPath: json))
        }
        if let report { try EvalHTMLReport.render(file).write(toFile: report, atomically: true, encoding: .utf8) }
        let failures = EvalGate.failures(summary, baseline: baselineFile?.summary, maxDrop: maxDrop)
        if !failures.isEmpty {
            for failure in failures { print("GATE FAILED: \(failure)") }
            throw ExitCode(1)
        }
        print(baselineFile == nil ? "gate passed (no baseline: must-escalate cases only)" : "gate passed against \(baseline ?? "")")
    }

    static func text(_ s: EvalSummary, results: [EvalResult], elapsed: TimeInterval) -> String {
        func pct(_ value: Double) -> String { String(format: "%.1f%%", value * 100) }
        var lines = [
            "cases \(s.cases) (answerable \(s.answerable), must escalate \(s.mustEscalate)) in \(String(format: "%.1f", elapsed)) s",
            "answered right and not escalated: \(pct(s.answeredRight)) of answerable",
            "automation rate: \(pct(s.automationRate)); accuracy of automated answers: \(pct(s.accuracy)); wrong automated: \(s.wrongAutomated)",
            "escalation recall (must-escalate cases escalated): \(pct(s.escalationRecall))",
            "reasons: " + s.reasons.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "),
            String(format: "latency ms: p50 %.0f, p95 %.0f, mean %.0f", s.latencyMsP50, s.latencyMsP95, s.latencyMsMean),
            "threshold sweep (answered right / wrong automated): "
                + s.thresholdSweep.map { String(format: "%.2f: %d/%d", $0.threshold, $0.answeredRight, $0.wrongAutomated) }.joined(separator: ", "),
        ]
        let wrong = results.filter { !$0.escalate && !$0.answerRight }
        if !wrong.isEmpty {
            lines.append("wrong automated answers:")
            lines += wrong.map { "  - \($0.question) → \($0.answer) (confidence \(String(format: "%.3f", $0.confidence)))" }
        }
        return lines.joined(separator: "\n")
    }

    /// One JSON line per case: the question, the model input, the stop strings and whether the
    /// model is asked at all.
    static func writePrompts(_ plans: [(question: String, plan: AnswerPlan)], to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        var lines = ""
        for (question, plan) in plans {
            let line: JSONValue = .object([
                "question": .string(question), "prompt": .string(plan.modelInput), "needs_model": .bool(plan.needsModel),
                "stop": .array((plan.stopStrings ?? []).map { .string($0) }),
            ])
            lines += String(decoding: try encoder.encode(line), as: UTF8.self) + "\n"
        }
        do {
            try lines.write(toFile: path, atomically: true, encoding: .utf8)
        } catch {
            throw ValidationError("cannot write --prompts \(path): its folder is missing or not writable")
        }
    }
}
