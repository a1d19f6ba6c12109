import ArgumentParser
import Foundation
import Inference
import KafkaClient
import Worker

struct LoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Generate load: send requests at a rate, collect replies, report throughput, latency, escalations and losses."
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "Requests per second.") var rate: Double = 10
    @Option(help: "Seconds of sending.") var duration: Double = 10
    @Option(help: "Extra burst, N@T: N requests at once, T seconds into the run.") var burst: String?
    @Option(name: .customLong("max-tokens")) var maxTokens: Int = 16
    @Option(help: "Seconds to wait for outstanding replies after sending.") var timeout: Double = 120
    @Option(help: "Write a JSON report here, and a chart of throughput and backlog next to it (.svg).") var report: String?
    @Option(help: ArgumentHelp(
        "Share of requests (0...1) that repeat an earlier question (the answer cache's peak); the rest are new questions. Unset: six questions in turn.",
        valueName: "ratio")) var `repeat`: Double?
    @Option(name: .customLong("repeat-skew"), help: ArgumentHelp(
        "How repeats pick the earlier question: 0 picks any of them alike; S > 0 picks the k-th question first asked with weight 1/k^S (Zipf's law: a few questions, asked early, are most of the repeats, as with quick-reply chips).",
        valueName: "S")) var repeatSkew: Double = 0
    @Option(help: ArgumentHelp(
        "Give each request a deadline this many seconds after it is sent: a worker answers it, or replies `expired` (escalated to a human) once it has passed. Unset: no deadline.",
        valueName: "seconds")) var deadline: Double?

    func validate() throws {
        if let ratio = `repeat`, !(0...1).contains(ratio) { throw ValidationError("--repeat must be 0...1") }
        if !(repeatSkew >= 0 && repeatSkew <= 10) { throw ValidationError("--repeat-skew must be 0...10") }
        if repeatSkew > 0, `repeat` == nil { throw ValidationError("--repeat-skew needs --repeat") }
        if let deadline, !(deadline > 0) { throw ValidationError("--deadline must be a positive number of seconds") }
    }

    func run() async throws {
        let configuration = try common.loadConfiguration(overrides: common.overrides)
        let client = configuration.kafka.clientConfiguration
        let run = UUID().uuidString.prefix(8).lowercased()
        let consumer = try await ReplyListener.fromEnd(of: configuration, groupID: "sluice-load-\(run)")

        let prompts = ["What is the annual fee of the platinum card?", "信用卡年费是多少？", "How do I report a lost card?",
                       "转账限额是多少？", "Can I increase my credit limit?", "我要转人工"]
        var questions = QuestionMix(prompts: prompts, repeatRatio: `repeat`, skew: repeatSkew)
        var schedule: [Double] = stride(from: 0.0, to: duration, by: 1 / max(rate, 0.001)).map { $0 }
        if let burst {
            let parts = burst.split(separator: "@")
            guard parts.count == 2, let count = Int(parts[0]), let at = Double(parts[1]) else { throw ValidationError("--burst must be N@T, e.g. 500@5") }
            schedule += Array(repeating: at, count: count)
            schedule.sort()
        }
        let tracker = LoadTracker(expected: schedule.count)
        let deadlineFormat = ISO8601DateFormatter()
        deadlineFormat.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let began = Date()
        let collector = Task {
            for try await message in consumer.messages {
                guard let id = message.headers.last(named: "correlation-id")?.stringValue, id.hasPrefix("load-\(run)-") else { continue }
                let object = (try? JSONSerialization.jsonObject(with: Data(message.value))) as? [String: Any] ?? [:]
                if await tracker.received(id, at: Date(), escalated: object["escalate"] as? Bool == true, status: object["status"] as? String ?? "?",
                                          cached: object["cache"] != nil) { break }
            }
        }
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: client, linger: .milliseconds(5)))
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, offset) in schedule.enumerated() {
                let wait = began.addingTimeInterval(offset).timeIntervalSinceNow
                if wait > 0 { try await Task.sleep(for: .seconds(wait)) }  // pacing the send rate
                let id = "load-\(run)-\(index)"
                var body: [String: Any] = ["request_id": id, "prompt": questions.next(index), "max_tokens": maxTokens,
                                           "conversation_id": "load-conv-\(index % 97)"]
                if let deadline { body["deadline"] = deadlineFormat.string(from: Date().addingTimeInterval(deadline)) }
                let message = KafkaProducerMessage(
                    topic: configuration.topics.requests[0], key: Array("load-conv-\(index % 97)".utf8),
                    value: Array(try JSONSerialization.data(withJSONObject: body)), headers: [KafkaHeader(name: "correlation-id", string: id)])
                await tracker.sent(id, at: Date())
                group.addTask { try await producer.send(message) }
            }
            try await group.waitForAll()
        }
        try await producer.close()
        let giveUp = Task {
            try await Task.sleep(for: .seconds(timeout))
            collector.cancel()
        }
        _ = await collector.result
        giveUp.cancel()
        try? await consumer.close()

        let summary = await tracker.summary(began: began, questions: questions.repeatRatio == nil ? nil : questions.spread)
        print(summary.text)
        if let report {
            try Data(summary.json).write(to: URL(fileURLWithPath: report))
            let chart = (report as NSString).deletingPathExtension + ".svg"
            try summary.svg.write(toFile: chart, atomically: true, encoding: .utf8)
            print("report: \(report), chart: \(chart)")
        }
        if summary.lost > 0 { throw ExitCode(3) }
    }
}

/// Send and receive times of every request of one load run.
actor LoadTracker {
    let expected: Int
    private var sentAt: [String: Date] = [:]
    private var receivedAt: [String: Date] = [:]
    private var escalated = 0
    private var statuses: [String: Int] = [:]
    private var cached: Set<String> = []

    init(expected: Int) { self.expected = expected }

    func sent(_ id: String, at time: Date) { sentAt[id] = time }

    /// Records a reply; true once every request has one.
    func received(_ id: String, at time: Date, escalated isEscalated: Bool, status: String, cached isCached: Bool = false) -> Bool {
        if receivedAt[id] == nil {
            receivedAt[id] = time
            if isCached { cached.insert(id) }
            if isEscalated { escalated += 1 }
            statuses[status, default: 0] += 1
        }
        return receivedAt.count >= expected
    }

    struct Summary {
        let text: String
        let json: Data
        let svg: String
        let lost: Int
    }

    /// `questions`: how many distinct questions were asked and how often the most asked one was.
    func summary(began: Date, questions: (distinct: Int, mostAsked: Int)? = nil) -> Summary {
        let latencies = receivedAt.compactMap { id, time in sentAt[id].map { time.timeIntervalSince($0) } }.sorted()
        func percentile(_ p: Double, of latencies: [Double] = latencies) -> Double {
            latencies.isEmpty ? 0 : latencies[max(0, Int((p * Double(latencies.count)).rounded(.up)) - 1)]
        }
        let hitLatencies = cached.compactMap { id in receivedAt[id].flatMap { time in sentAt[id].map { time.timeIntervalSince($0) } } }.sorted()
        let lost = sentAt.count - receivedAt.count
        let last = (receivedAt.values.max() ?? began).timeIntervalSince(began)
        let throughput = last > 0 ? Double(receivedAt.count) / last : 0
        // Per-second timeline: sent, answered, backlog (sent − answered so far).
        let seconds = Int(max(last, sentAt.values.map { $0.timeIntervalSince(began) }.max() ?? 0).rounded(.up)) + 1
        var sentPerSecond = [Int](repeating: 0, count: seconds)
        var answeredPerSecond = [Int](repeating: 0, count: seconds)
        for time in sentAt.values { sentPerSecond[min(seconds - 1, Int(time.timeIntervalSince(began)))] += 1 }
        for time in receivedAt.values { answeredPerSecond[min(seconds - 1, Int(time.timeIntervalSince(began)))] += 1 }
        var backlog: [Int] = []
        var outstanding = 0
        for second in 0..<seconds {
            outstanding += sentPerSecond[second] - answeredPerSecond[second]
            backlog.append(outstanding)
        }
        var text = String(
            format: """
                sent %d, answered %d, lost %d
                throughput %.1f replies/s over %.1f s
                latency p50 %.0f ms, p95 %.0f ms, p99 %.0f ms
                escalation rate %.1f%%, statuses %@
                answer cache hits %d, their latency p50 %.0f ms, p95 %.0f ms
                """,
            sentAt.count, receivedAt.count, lost, throughput, last, percentile(0.5) * 1000, percentile(0.95) * 1000, percentile(0.99) * 1000,
            receivedAt.isEmpty ? 0 : Double(escalated) / Double(receivedAt.count) * 100,
            statuses.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " "),
            cached.count, percentile(0.5, of: hitLatencies) * 1000, percentile(0.95, of: hitLatencies) * 1000)
        var object: [String: Any] = [
            "sent": sentAt.count, "answered": receivedAt.count, "lost": lost, "throughput_per_s": throughput,
            "latency_ms": ["p50": percentile(0.5) * 1000, "p95": percentile(0.95) * 1000, "p99": percentile(0.99) * 1000],
            "cache_hits": cached.count,
            "cache_hit_latency_ms": ["p50": percentile(0.5, of: hitLatencies) * 1000, "p95": percentile(0.95, of: hitLatencies) * 1000],
            "escalation_rate": receivedAt.isEmpty ? 0 : Double(escalated) / Double(receivedAt.count), "statuses": statuses,
            "timeline": ["sent_per_s": sentPerSecond, "answered_per_s": answeredPerSecond, "backlog": backlog],
        ]
        if let questions {
            object["questions"] = ["distinct": questions.distinct, "most_asked": questions.mostAsked]
            text += "\nquestions: \(questions.distinct) distinct, the most asked \(questions.mostAsked) times"
        }
        let json = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .prettyPrinted])) ?? Data()
        return Summary(text: text, json: json, svg: Self.chart(sent: sentPerSecond, answered: answeredPerSecond, backlog: backlog), lost: lost)
    }

    /// A line chart of requests sent and answered per second and the backlog.
    static func chart(sent: [Int], answered: [Int], backlog: [Int]) -> String {
        let width = 800.0, height = 360.0, margin = 40.0
        let top = Double(max(1, (sent + answered + backlog).max() ?? 1))
        let step = (width - 2 * margin) / Double(max(1, sent.count - 1))
        func line(_ values: [Int], _ color: String) -> String {
            let points = values.enumerated().map { index, value in
                String(format: "%.1f,%.1f", margin + Double(index) * step, height - margin - Double(value) / top * (height - 2 * margin))
            }.joined(separator: " ")
            return "<polyline fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\" points=\"\(points)\"/>"
        }
        return """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
            <rect width="100%" height="100%" fill="white"/>
            <line x1="\(margin)" y1="\(height - margin)" x2="\(width - margin)" y2="\(height - margin)" stroke="black"/>
            <line x1="\(margin)" y1="\(margin)" x2="\(margin)" y2="\(height - margin)" stroke="black"/>
            <text x="\(margin)" y="20">Sluice load: sent/s (blue), answered/s (green), backlog (red); max \(Int(top)); \(sent.count) s</text>
            \(line(sent, "#1f77b4"))
            \(line(answered, "#2ca02c"))
            \(line(backlog, "#d62728"))
            </svg>
            """
    }
}

/// Which question each request asks. Without a repeat ratio: the fixed questions in turn.
/// With one: that share of requests (decided by a fixed-seed generator, so a run replays)
/// repeats a question asked before; the others ask a new one (a fixed question with a
/// reference number no other request has). A repeat picks among the questions asked so far
/// alike (`skew` 0), or the k-th first asked with weight about 1/k^skew (Zipf's law).
struct QuestionMix {
    let prompts: [String]
    let repeatRatio: Double?
    let skew: Double
    private var asked: [String] = []
    /// Times each of `asked` was asked.
    private var times: [Int] = []
    private var random = SplitMix64(seed: 0x9E37_79B9_7F4A_7C15)

    init(prompts: [String], repeatRatio: Double?, skew: Double = 0) {
        self.prompts = prompts
        self.repeatRatio = repeatRatio
        self.skew = skew
    }

    mutating func next(_ index: Int) -> String {
        guard let ratio = repeatRatio else { return prompts[index % prompts.count] }
        if !asked.isEmpty, unit() < ratio {
            let pick = earlier(of: asked.count)
            times[pick] += 1
            return asked[pick]
        }
        let question = "\(prompts[index % prompts.count]) (ref \(index))"
        asked.append(question)
        times.append(1)
        return question
    }

    /// Distinct questions asked so far, and the times the most asked one was.
    var spread: (distinct: Int, mostAsked: Int) { (asked.count, times.max() ?? 0) }

    /// Uniform in [0, 1).
    private mutating func unit() -> Double {
        Double(random.next() >> 11) / Double(1 << 53)
    }

    /// An index below `count`: uniform at skew 0, else drawn by inverting the continuous
    /// density x^-skew on [1, count + 1) (O(1) per draw whatever the number asked).
    private mutating func earlier(of count: Int) -> Int {
        guard skew > 0 else { return Int(random.next() % UInt64(count)) }
        let u = unit(), n = Double(count + 1)
        let x = abs(skew - 1) < 1e-9
            ? pow(n, u)
            : pow(1 + u * (pow(n, 1 - skew) - 1), 1 / (1 - skew))
        return min(count - 1, max(0, Int(x) - 1))
    }
}

