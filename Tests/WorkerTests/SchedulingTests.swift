import Foundation
import Inference
import KafkaClient
import Synchronization
import Testing
@testable import Worker

/// A model stand-in: every sequence finishes in one step with a scripted confidence
/// (looked up by prompt) — the unit-level check of the escalation threshold and rules.
final class ScriptedBackend: GenerationBackend {
    let identity = ModelIdentity(name: "scripted", quantization: "none", sha256: "")
    var confidences: [String: Double]
    private var pending: [(Int, GenerationRequest)] = []
    private(set) var admittedOrder: [String] = []

    init(confidences: [String: Double]) { self.confidences = confidences }

    var activeCount: Int { pending.count }
    func tokenize(_ prompt: String) -> [Int32] { prompt.unicodeScalars.map { Int32(bitPattern: $0.value) } }
    func submit(_ id: Int, _ request: GenerationRequest) throws(InferenceError) {
        pending.append((id, request))
        admittedOrder.append(Self.text(request.promptTokens))
    }
    func cancel(_ id: Int) { pending.removeAll { $0.0 == id } }
    func step() throws(InferenceError) -> [BatchGenerator.Event] {
        defer { pending = [] }
        return pending.map { id, request in
            let prompt = Self.text(request.promptTokens)
            return .finished(id, Completion(text: "answer", tokens: [1], confidence: confidences[prompt] ?? 1, minTokenProbability: 0.5,
                                            promptTokens: request.promptTokens.count, finishReason: .endOfSequence, timeToFirstToken: 0))
        }
    }
    static func text(_ tokens: [Int32]) -> String { String(String.UnicodeScalarView(tokens.compactMap { Unicode.Scalar(UInt32(bitPattern: $0)) })) }
}

@Suite("Scheduling, offsets and escalation (unit)")
struct SchedulingTests {
    static func request(_ prompt: String, priority: InferenceRequest.Priority = .interactive, deadline: Date? = nil, offset: Int64 = 0) -> InferenceRequest {
        InferenceRequest(
            requestID: prompt, prompt: prompt, messages: nil, replyTopic: "r", replyPartition: nil, correlationID: nil, conversationID: nil,
            customerRef: nil, channel: nil, maxTokens: 4, temperature: 0, topP: 1, seed: 0, deadline: deadline, priority: priority, metadata: nil,
            source: KafkaTopicPartitionOffset(topic: "t", partition: 0, offset: offset), receivedAt: Date())
    }

    /// Runs `requests` through a scheduler over `backend` and returns each one's outcome.
    static func run(_ requests: [InferenceRequest], backend: ScriptedBackend, maxBatch: Int = 4) async -> [String: ScheduledJob.Outcome] {
        let scheduler = ContinuousBatchScheduler(backend: backend, settings: .init(maxBatchSize: maxBatch, maxWait: 0.05, queueCapacity: 64, aging: 60))
        let outcomes = Mutex<[String: ScheduledJob.Outcome]>([:])
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let remaining = Atomic(requests.count)
            for request in requests {
                _ = scheduler.enqueue(ScheduledJob(request: request, promptTokens: backend.tokenize(request.prompt), enqueuedAt: Date()) { outcome in
                    outcomes.withLock { $0[request.requestID] = outcome }
                    if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { done.resume() }
                })
            }
            scheduler.start()
        }
        scheduler.stop()
        return outcomes.withLock { $0 }
    }

    @Test("the escalation policy flags answers below the threshold and the rule phrases, whatever the confidence")
    func escalation() async throws {
        let backend = ScriptedBackend(confidences: [
            "fee?": 0.95, "limit?": 0.69, "edge": 0.70, "我要转人工": 0.99, "I want a human agent": 0.9, "This is fraud": 0.9, "我要投诉": 0.8,
        ])
        let outcomes = await Self.run(backend.confidences.keys.map { Self.request($0) }, backend: backend)
        let policy = EscalationPolicy()
        var reasons: [String: String?] = [:]
        for (prompt, outcome) in outcomes {
            guard case .completed(let completion, _) = outcome else { Issue.record("\(prompt) not completed"); continue }
            reasons[prompt] = policy.reason(prompt: prompt, confidence: completion.confidence)
        }
        #expect(reasons["fee?"] == .some(nil))
        #expect(reasons["limit?"] == "low_confidence")
        #expect(reasons["edge"] == .some(nil), "the threshold itself is not below the threshold")
        #expect(reasons["我要转人工"] == "human_requested")
        #expect(reasons["I want a human agent"] == "human_requested")
        #expect(reasons["This is fraud"] == "fraud")
        #expect(reasons["我要投诉"] == "complaint")
        #expect(EscalationPolicy(confidenceThreshold: 0.9).reason(prompt: "fee?", confidence: 0.85) == "low_confidence")
    }

    @Test("queued interactive requests are admitted before earlier batch ones; expired ones are never admitted")
    func priorityAndDeadlines() async throws {
        let backend = ScriptedBackend(confidences: [:])
        let requests = (0..<4).map { Self.request("batch-\($0)", priority: .batch) } + [Self.request("late", deadline: Date().addingTimeInterval(-1))]
            + (0..<2).map { Self.request("interactive-\($0)") }
        let outcomes = await Self.run(requests, backend: backend, maxBatch: 1)
        #expect(Array(backend.admittedOrder.prefix(2)) == ["interactive-0", "interactive-1"])
        #expect(!backend.admittedOrder.contains("late"))
        guard case .expired = outcomes["late"] else {
            Issue.record("the late request was not answered expired")
            return
        }
    }

    @Test("offsets are committable only up to the lowest unfinished one")
    func offsetTracker() {
        var tracker = OffsetTracker()
        let partition = KafkaTopicPartition(topic: "t", partition: 0)
        for offset in Int64(10)..<15 { tracker.begin(partition, offset: offset) }
        #expect(tracker.finish(partition, offset: 12) == nil)
        #expect(tracker.finish(partition, offset: 11) == nil)
        #expect(tracker.finish(partition, offset: 10) == 13, "10, 11 and 12 are done: commit 13")
        #expect(tracker.committableOffsets.map(\.offset) == [13])
        tracker.abandon(partition, offset: 13)
        #expect(tracker.finish(partition, offset: 14) == nil, "13 was handed over, never finished here")
        #expect(tracker.committableOffsets.map(\.offset) == [13])
        #expect(tracker.inFlightCount == 0)
    }
}

@Suite("Request codec (unit)")
struct RequestCodecTests {
    static let limits = RequestLimits(maxPromptBytes: 100, defaultMaxTokens: 8, maxTokensLimit: 16, defaultTopic: "replies", batchTopics: ["bulk"])

    static func record(_ json: String, topic: String = "requests", headers: [KafkaHeader] = []) -> KafkaConsumerMessage {
        KafkaConsumerMessage(topic: topic, partition: 0, offset: 7, key: nil, value: Array(json.utf8), headers: headers, timestamp: nil)
    }

    @Test("priority defaults to batch on batch topics, a request's own priority wins, Spring headers set the reply address")
    func priorityAndHeaders() throws {
        #expect(try RequestCodec.decode(Self.record(#"{"request_id":"a","prompt":"hi"}"#), limits: Self.limits).priority == .interactive)
        #expect(try RequestCodec.decode(Self.record(#"{"request_id":"a","prompt":"hi"}"#, topic: "bulk"), limits: Self.limits).priority == .batch)
        #expect(try RequestCodec.decode(Self.record(#"{"request_id":"a","prompt":"hi","priority":"interactive"}"#, topic: "bulk"), limits: Self.limits).priority == .interactive)
        let spring = try RequestCodec.decode(Self.record(#"{"request_id":"a","prompt":"hi"}"#, headers: [
            KafkaHeader(name: "kafka_replyTopic", string: "spring.replies"), KafkaHeader(name: "kafka_replyPartition", value: [0, 0, 0, 2]),
            KafkaHeader(name: "kafka_correlationId", value: [1, 2, 3]),
        ]), limits: Self.limits)
        #expect(spring.replyTopic == "spring.replies" && spring.replyPartition == 2 && spring.correlationID == [1, 2, 3])
        #expect(spring.maxTokens == 8 && spring.source.offset == 7)
    }
}
