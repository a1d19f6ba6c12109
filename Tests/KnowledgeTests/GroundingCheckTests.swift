import Foundation
import Knowledge
import Testing

/// The checks an answer must pass to go out unreviewed, and the eval's scoring and gate.
@Suite("Grounding checks, candidates and eval scoring")
struct GroundingCheckTests {
    static let limits = "The daily transfer limit for online banking is 50,000 yuan per account; a single transfer may be up to 20,000 yuan."
    static let hotline = "The customer service hotline is 95588, available 24 hours a day; from abroad call +86-10-95588."
    static let hours = "Branches are open 9:00 to 17:00 Monday to Friday, and 9:00 to 12:00 on Saturdays."

    @Test("a number, amount, percentage, phone, time, URL or e-mail absent from the passages is an unsupported claim", arguments: [
        ("The daily limit is 100,000 yuan.", ["100,000"]),
        ("Call 1-800-222-8224 at any time.", ["1-800-222-8224"]),
        ("The rate is 2.5% per year.", ["2.5%"]),
        ("Branches open at 8:30 on Saturdays.", ["8:30"]),
        ("See https://bank.example/limits for details.", ["https://bank.example/limits"]),
        ("Write to help@bank.example.", ["help@bank.example"]),
        ("The limit is fifty thousand yuan.", ["fifty", "thousand"]),
    ])
    func unsupported(answer: String, claims: [String]) {
        let report = GroundingCheck.check(answer: answer, passages: [Self.limits, Self.hotline, Self.hours])
        #expect(report.unsupportedClaims.map(\.text) == claims)
    }

    @Test("facts the passages state are supported, whatever their formatting", arguments: [
        "The daily transfer limit is 50000 yuan.",
        "Call 95588.",
        "From abroad call +86-10-95588.",
        "On Saturdays branches are open 9:00 to 12:00.",
        "网上银行每日转账限额为50,000元。",
    ])
    func supported(answer: String) {
        let report = GroundingCheck.check(answer: answer, passages: [Self.limits, Self.hotline, Self.hours])
        #expect(report.unsupportedClaims.isEmpty, "\(report.unsupportedClaims)")
    }

    @Test("support is the share of the answer's content terms found in the passages")
    func support() {
        let copied = GroundingCheck.check(answer: Self.hours, passages: [Self.hours])
        #expect(copied.support == 1)
        let invented = GroundingCheck.check(answer: "Yes, you can pay your mortgage early without penalty.", passages: [Self.hours])
        #expect(invented.support < 0.2, "\(invented.support)")
    }

    @Test("claims are classified by kind")
    func kinds() {
        let claims = GroundingCheck.claims(in: "Call +86-10-95588 before 17:00, fee 0.1%, at most 260 yuan, see www.bank.example or ask a@b.cn")
        #expect(claims.map(\.kind) == [.phone, .time, .percentage, .number, .url, .email])
    }

    @Test("sentences split at sentence ends, not inside decimals or times; candidates are sentences plus the whole passage")
    func sentences() {
        #expect(SentenceSplitter.sentences("Rates: 1.45% a year. Open 9:00 to 17:00! Ask? Done") == ["Rates: 1.45% a year.", "Open 9:00 to 17:00!", "Ask?", "Done"])
        #expect(SentenceSplitter.sentences("周六9:00至12:00。周日休息。") == ["周六9:00至12:00。", "周日休息。"])
        let entry = KnowledgeEntry(id: "h", title: "Hours", text: "Open 9:00 to 17:00. Closed on Sundays.")
        #expect(GroundedPrompt.candidates([entry, entry]).map(\.text) == ["Open 9:00 to 17:00.", "Closed on Sundays.", entry.text])
        #expect(GroundedPrompt.candidates([entry, entry]).map(\.passage) == [0, 0, 0])
    }

    @Test("the prompt puts the passages before the question, and earlier turns before it")
    func prompt() {
        let entry = KnowledgeEntry(id: "h", title: "Hours", text: "Open 9:00 to 17:00.")
        let text = GroundedPrompt().render(question: "When do you open?", passages: [entry], history: ["Customer: hi"])
        #expect(text == "Bank information:\n- Hours: Open 9:00 to 17:00.\n\nCustomer: hi\nCustomer question: When do you open?\nAnswer:")
    }

    static func result(_ question: String, expect: EvalCase.Expectation, answer: String, escalate: Bool) -> EvalResult {
        EvalResult(case: EvalCase(question: question, expect: expect), answer: answer, escalate: escalate,
                   reasons: escalate ? ["low_confidence"] : [], confidence: escalate ? 0.2 : 0.9, passages: [], latencyMs: 10)
    }

    @Test("eval scoring: automation, accuracy, recall; the gate fails on an answered must-escalate case and on a drop")
    func scoring() throws {
        let results = [
            Self.result("limit?", expect: .init(contains: ["50000"]), answer: "The limit is 50,000 yuan.", escalate: false),
            Self.result("hotline?", expect: .init(contains: ["95588"]), answer: "Call 95599.", escalate: false),
            Self.result("hours?", expect: .init(contains: ["9:00"]), answer: "…", escalate: true),
            Self.result("human", expect: .init(escalate: true), answer: "…", escalate: true),
        ]
        let summary = EvalSummary(results)
        #expect(summary.answerable == 3 && summary.mustEscalate == 1)
        #expect(abs(summary.automationRate - 2.0 / 3) < 1e-9 && summary.accuracy == 0.5 && summary.wrongAutomated == 1)
        #expect(abs(summary.answeredRight - 1.0 / 3) < 1e-9 && summary.escalationRecall == 1)
        #expect(EvalGate.failures(summary, baseline: summary, maxDrop: 0.05).isEmpty)
        var better = summary
        better.accuracy = 0.9
        #expect(EvalGate.failures(summary, baseline: better, maxDrop: 0.05).count == 1)
        let answered = EvalSummary(results.dropLast() + [Self.result("human", expect: .init(escalate: true), answer: "ok", escalate: false)])
        #expect(EvalGate.failures(answered, baseline: nil, maxDrop: 0.05).first?.contains("must-escalate") == true)
        #expect(throws: KnowledgeError.self) { try EvalCase.parseJSONL(#"{"question":"q","expect":{}}"#) }
        let html = EvalHTMLReport.render(EvalReportFile(summary: summary, knowledgeVersion: "kb-1", configuration: [:], cases: results))
        #expect(html.contains("<svg") && html.contains("WRONG automated") && html.contains("Call 95599."))
    }
}
