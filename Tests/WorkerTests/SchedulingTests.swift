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
    func tokenizeContinuation(_ text: String) -> [Int32] { tokenize(text) }
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

// Touched on the scheduler's thread only (finishers run there), and read after it stopped.
extension ScriptedBackend: @unchecked Sendable {}

@Suite("Scheduling, offsets and escalation (unit)")
struct SchedulingTests {
    static func request(_ prompt: String, priority: InferenceRequest.Priority = .interactive, deadline: Date? = nil, offset: Int64 = 0) -> InferenceRequest {
        InferenceRequest(
            requestID: prompt, prompt: prompt, messages: nil, replyTopic: "r", replyPartition: nil, correlationID: nil, trace: RequestTrace(headers: []), conversationID: nil,
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

    @Test("the worker's answer pipeline flags answers below the configured threshold and the rule phrases, whatever the confidence")
    func escalation() async throws {
        let backend = ScriptedBackend(confidences: [
            "fee?": 0.95, "limit?": 0.69, "edge": 0.70, "我要转人工": 0.99, "I want a human agent": 0.9, "This is fraud": 0.9, "我要投诉": 0.8,
        ])
        // The pipeline the worker builds from its configuration (no knowledge base: ungrounded).
        var configuration = SluiceConfiguration()
        configuration.knowledge.db = ""
        let answers = try AnswerPipeline(configuration: configuration, backend: backend)
        let requests = backend.confidences.keys.map { Self.request($0) }
        let outcomes = await Self.run(requests, backend: backend)
        func decide(_ pipeline: AnswerPipeline, _ request: InferenceRequest) throws -> AnswerDecision? {
            guard case .completed(let completion, _) = outcomes[request.prompt] else { return nil }
            return pipeline.decide(request, plan: try pipeline.plan(request), completion: completion)
        }
        var reasons: [String: String?] = [:]
        for request in requests {
            let decision = try #require(try decide(answers, request), "\(request.prompt) not completed")
            #expect(decision.escalate == (decision.reason != nil))
            reasons[request.prompt] = decision.reason
        }
        #expect(reasons["fee?"] == .some(nil))
        #expect(reasons["limit?"] == "low_confidence")
        #expect(reasons["edge"] == .some(nil), "the threshold itself is not below the threshold")
        #expect(reasons["我要转人工"] == "human_requested")
        #expect(reasons["I want a human agent"] == "human_requested")
        #expect(reasons["This is fraud"] == "fraud")
        #expect(reasons["我要投诉"] == "complaint")
        // worker.escalation_threshold and worker.escalation_rules are what the worker applies.
        configuration.worker.escalationThreshold = 0.96
        configuration.worker.escalationRules = ["vip": "gold card, fee"]
        let strict = try AnswerPipeline(configuration: configuration, backend: backend)
        let fee = try #require(requests.first { $0.prompt == "fee?" })
        #expect(try decide(strict, fee)?.reasons == ["vip", "low_confidence"])
        let human = try #require(requests.first { $0.prompt == "我要转人工" })
        #expect(try decide(strict, human)?.reasons == [], "configured rules replace the defaults")
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

    @Test("the commit point is the lowest unfinished offset; an abandoned offset holds it back")
    func offsetTracker() {
        var tracker = OffsetTracker()
        let partition = KafkaTopicPartition(topic: "t", partition: 0)
        for offset in Int64(10)..<15 { tracker.begin(partition, offset: offset) }
        #expect(tracker.commitPoints.map(\.offset) == [10])
        tracker.finish(partition, offset: 12)
        tracker.finish(partition, offset: 11)
        #expect(tracker.commitPoints.map(\.offset) == [10], "10 is still running")
        tracker.finish(partition, offset: 10)
        #expect(tracker.commitPoints.map(\.offset) == [13], "10, 11 and 12 are done: commit 13")
        tracker.abandon(partition, offset: 13)
        let finishedAbandoned = tracker.finish(partition, offset: 13)
        #expect(!finishedAbandoned, "13 was handed over, never finished here")
        tracker.finish(partition, offset: 14)
        #expect(tracker.commitPoints.map(\.offset) == [13])
        #expect(tracker.inFlightCount == 0)
    }

    @Test("gaps in the offsets (transaction markers, compaction) never hold the commit point back")
    func commitPointAcrossGaps() {
        var tracker = OffsetTracker()
        let partition = KafkaTopicPartition(topic: "t", partition: 0)
        // A transactional producer: records 0, 1, 2, a commit marker at 3, records 4, 5, 6, marker 7.
        for offset: Int64 in [0, 1, 2, 4, 5, 6] { tracker.begin(partition, offset: offset) }
        for offset: Int64 in [2, 1, 0] { tracker.finish(partition, offset: offset) }
        #expect(tracker.commitPoints.map(\.offset) == [4], "3 is a marker: the point is the lowest unfinished offset")
        tracker.finish(partition, offset: 5)
        tracker.finish(partition, offset: 4)
        #expect(tracker.commitPoints.map(\.offset) == [6])
        tracker.finish(partition, offset: 6)
        #expect(tracker.commitPoints.map(\.offset) == [7], "nothing in flight: after the last consumed")
        // The consumer's position after an empty poll is past the final marker: the log end.
        tracker.advance(partition, position: 8)
        #expect(tracker.commitPoints.map(\.offset) == [8])
        // A compacted topic: offsets 20 and 30 only.
        tracker.begin(partition, offset: 20)
        tracker.begin(partition, offset: 30)
        #expect(tracker.commitPoints.map(\.offset) == [20])
        tracker.finish(partition, offset: 20)
        #expect(tracker.commitPoints.map(\.offset) == [30])
        // A position read earlier never moves the point below or past running work.
        tracker.advance(partition, position: 25)
        #expect(tracker.commitPoints.map(\.offset) == [30])
        tracker.finish(partition, offset: 30)
        #expect(tracker.commitPoints.map(\.offset) == [31])
    }

    @Test("commit points are handed out once each time they move")
    func takeCommitPoints() {
        var tracker = OffsetTracker()
        let a = KafkaTopicPartition(topic: "t", partition: 0), b = KafkaTopicPartition(topic: "t", partition: 1)
        tracker.begin(a, offset: 0)
        tracker.begin(b, offset: 5)
        #expect(Set(tracker.takeCommitPoints().map(\.offset)) == [0, 5])
        #expect(tracker.takeCommitPoints().isEmpty)
        tracker.finish(b, offset: 5)
        #expect(tracker.takeCommitPoints().map(\.offset) == [6])
        // A partition first seen through its position (only markers since its commit).
        let c = KafkaTopicPartition(topic: "t", partition: 2)
        tracker.advance(c, position: 9)
        #expect(tracker.takeCommitPoints().map(\.offset) == [9])
        tracker.remove([a, b, c])
        #expect(tracker.commitPoints.isEmpty)
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

    static func decode(_ json: String, headers: [KafkaHeader] = []) -> Result<InferenceRequest, RequestRejection> {
        Result { () throws(RequestRejection) in try RequestCodec.decode(Self.record(json, headers: headers), limits: Self.limits) }
    }

    static func rejection(_ json: String, headers: [KafkaHeader] = []) -> RequestRejection? {
        if case .failure(let rejection) = decode(json, headers: headers) { return rejection }
        return nil
    }

    @Test("0, 1, 0.0 and 1.0 are numbers (greedy decoding as a Java service sends it); booleans are not")
    func zeroAndOneAreNumbers() throws {
        let request = try Self.decode(#"{"request_id":"a","prompt":"hi","temperature":0,"max_tokens":1,"top_p":1,"seed":0}"#).get()
        #expect(request.temperature == 0 && request.maxTokens == 1 && request.topP == 1 && request.seed == 0)
        let floats = try Self.decode(#"{"request_id":"a","prompt":"hi","temperature":0.0,"max_tokens":1.0,"top_p":1.0,"seed":0.0}"#).get()
        #expect(floats.temperature == 0 && floats.maxTokens == 1 && floats.topP == 1 && floats.seed == 0)
        for field in ["temperature", "max_tokens", "top_p", "seed"] {
            let rejection = Self.rejection(#"{"request_id":"a","prompt":"hi","\#(field)":true}"#)
            #expect(rejection?.code == "invalid_field" && rejection?.message.contains(field) == true, "\(field): \(String(describing: rejection))")
        }
    }

    @Test("out-of-range and non-numeric numbers are rejected, never trapped on", arguments: [
        #""max_tokens":9223372036854775807"#, #""max_tokens":9223372036854775808"#, #""max_tokens":1e20"#, #""max_tokens":-1e20"#,
        #""max_tokens":2.5"#, #""max_tokens":"NaN""#, #""max_tokens":1e400"#, #""seed":1e20"#, #""seed":-1"#, #""seed":18446744073709551616"#,
        #""seed":"Infinity""#, #""temperature":1e20"#, #""temperature":-1e20"#, #""temperature":"NaN""#, #""top_p":0"#, #""top_p":-1e308"#,
        #""top_p":4.9e-324"#,  // positive as a double, zero as the sampler's Float (found by the property test)
    ])
    func extremeNumbers(field: String) {
        let rejection = Self.rejection(#"{"request_id":"r-1","prompt":"hi",\#(field)}"#)
        #expect(rejection?.code == "invalid_field", "\(field): \(String(describing: rejection))")
        #expect(rejection?.requestID == "r-1", "the rejection keeps the request id for the error reply")
    }

    @Test("the largest seed and limits at their bounds are accepted")
    func bounds() throws {
        let request = try Self.decode(#"{"request_id":"a","prompt":"hi","seed":18446744073709551615,"max_tokens":16}"#).get()
        #expect(request.seed == UInt64.max && request.maxTokens == 16)
        #expect(Self.rejection(#"{"request_id":"a","prompt":"hi","max_tokens":17}"#)?.code == "invalid_field")
    }

    @Test("limits are enforced before a value is kept or echoed: request id, metadata, messages, headers, audit fields")
    func limits() {
        let longID = String(repeating: "x", count: 64 * 1024)
        let id = Self.rejection(#"{"request_id":"\#(longID)","prompt":"hi"}"#)
        #expect(id?.code == "invalid_field" && id?.requestID == nil, "a 64 KB request id is never kept")
        let metadata = Self.rejection(#"{"request_id":"a","prompt":"hi","metadata":{"blob":"\#(String(repeating: "m", count: 20_000))"}}"#)
        #expect(metadata?.code == "invalid_field" && metadata?.message.contains("metadata") == true)
        let messages = (0..<65).map { _ in #"{"role":"user","content":"x"}"# }.joined(separator: ",")
        #expect(Self.rejection(#"{"request_id":"a","messages":[\#(messages)]}"#)?.message.contains("messages") == true)
        let header = Self.rejection(#"{"request_id":"a","prompt":"hi"}"#, headers: [KafkaHeader(name: "correlation-id", value: Array(repeating: 1, count: 2_000))])
        #expect(header?.code == "invalid_header" && header?.correlationID == nil)
        #expect(Self.rejection(#"{"request_id":"a","prompt":"hi","channel":"\#(String(repeating: "c", count: 300))"}"#)?.code == "invalid_field")
        #expect(Self.rejection(#"{"request_id":"a","prompt":"hi"}"#, headers: [KafkaHeader(name: "kafka_replyPartition", value: [1, 2])])?.code == "invalid_header")
    }

    @Test("wrong types name their field; malformed JSON, non-objects and invalid UTF-8 are told apart")
    func wrongTypes() {
        #expect(Self.rejection(#"{"request_id":"a","messages":[{"role":1,"content":"x"}]}"#)?.message.contains("messages[0].role") == true)
        #expect(Self.rejection(#"{"request_id":"a","prompt":"hi","metadata":[1]}"#)?.message.contains("metadata") == true)
        #expect(Self.rejection(#"{"request_id":"a","prompt":42}"#)?.message.contains("prompt") == true)
        #expect(Self.rejection(#"{"request_id":"a","prompt":"#)?.code == "malformed_json")
        #expect(Self.rejection(#"[1,2]"#)?.code == "malformed_json")
        #expect(Self.rejection(#"{"prompt":"hi"}"#)?.code == "missing_field")
        let invalid = KafkaConsumerMessage(topic: "requests", partition: 0, offset: 1, key: nil, value: [0x7B, 0xFF, 0x7D], headers: [], timestamp: nil)
        #expect(throws: RequestRejection.self) { try RequestCodec.decode(invalid, limits: Self.limits) }
    }

    @Test("metadata is echoed back exactly, large integers included")
    func metadataEcho() throws {
        let request = try Self.decode(#"{"request_id":"a","prompt":"hi","metadata":{"n":9007199254740993,"s":"é","list":[true,null,1.5]}}"#).get()
        let reply = InferenceReply(requestID: "a", status: .ok, escalate: false, worker: "w", metadata: request.metadata)
        let text = String(decoding: reply.encoded(), as: UTF8.self)
        #expect(text.contains(#""n":9007199254740993"#) && text.contains(#""list":[true,null,1.5]"#), "\(text)")
        #expect(text.contains(#""text":null"#) && text.contains(#""status":"ok""#))
    }
}

/// A model whose sequences never finish: every step makes progress but produces nothing.
final class EndlessBackend: GenerationBackend, @unchecked Sendable {  // state behind `lock`
    let identity = ModelIdentity(name: "endless", quantization: "none", sha256: "")
    private let lock = NSLock()
    private var running: Set<Int> = []
    private var cancelledIDs: Set<Int> = []
    /// Signalled on every submit.
    let submitted = DispatchSemaphore(value: 0)

    var activeCount: Int { lock.withLock { running.count } }
    var cancelled: Set<Int> { lock.withLock { cancelledIDs } }
    func tokenize(_ prompt: String) -> [Int32] { [1] }
    func tokenizeContinuation(_ text: String) -> [Int32] { [1] }
    func submit(_ id: Int, _ request: GenerationRequest) throws(InferenceError) {
        _ = lock.withLock { running.insert(id) }
        submitted.signal()
    }
    func cancel(_ id: Int) {
        lock.withLock {
            running.remove(id)
            cancelledIDs.insert(id)
        }
    }
    func step() throws(InferenceError) -> [BatchGenerator.Event] { [] }
}

@Suite("Scheduler stop (unit)")
struct SchedulerStopTests {
    @Test("stop hands queued jobs back at once and cancels running ones at the deadline; none is reported finished")
    func bounded() throws {
        let backend = EndlessBackend()
        let scheduler = ContinuousBatchScheduler(backend: backend, settings: .init(maxBatchSize: 1, maxWait: 0, queueCapacity: 8, aging: 60))
        let finishedCount = Atomic(0)
        let requests = (0..<3).map { SchedulingTests.request("q\($0)", offset: Int64($0)) }
        for request in requests {
            #expect(scheduler.enqueue(ScheduledJob(request: request, promptTokens: [1], enqueuedAt: Date()) { _ in
                finishedCount.add(1, ordering: .relaxed)
            }))
        }
        scheduler.start()
        #expect(backend.submitted.wait(timeout: .now() + 10) == .success, "the first job started")
        let before = Date()
        let handedBack = scheduler.stop(until: Date().addingTimeInterval(0.3))
        #expect(Date().timeIntervalSince(before) < 2, "stop waited past its deadline")
        #expect(Set(handedBack.map(\.offset)) == [0, 1, 2])
        #expect(backend.cancelled.count == 1 && backend.activeCount == 0)
        #expect(finishedCount.load(ordering: .relaxed) == 0)
        #expect(!scheduler.enqueue(ScheduledJob(request: requests[0], promptTokens: [1], enqueuedAt: Date()) { _ in }), "no work after stop")
    }
}

@Suite("Scheduler: identical questions share an answer (unit)")
struct SchedulerSharingTests {
    static func job(_ request: InferenceRequest, key: String?, shortcut: (@Sendable () -> Bool)? = nil,
                    onFinish: @escaping @Sendable (ScheduledJob.Outcome) -> Void = { _ in }) -> ScheduledJob {
        ScheduledJob(request: request, promptTokens: ScriptedBackend(confidences: [:]).tokenize(request.prompt), enqueuedAt: Date(),
                     shareKey: key, shortcut: shortcut, onFinish: onFinish)
    }

    @Test("a queued job answered meanwhile (its shortcut) never reaches the model and is not reported finished by the scheduler")
    func shortcutAtAdmission() async throws {
        let backend = ScriptedBackend(confidences: [:])
        let scheduler = ContinuousBatchScheduler(backend: backend, settings: .init(maxBatchSize: 1, maxWait: 0, queueCapacity: 8, aging: 60))
        let shortcuts = Atomic(0)
        let finished = Mutex<[String]>([])
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let remaining = Atomic(2)
            let record: @Sendable (String) -> @Sendable (ScheduledJob.Outcome) -> Void = { id in
                { _ in
                    finished.withLock { $0.append(id) }
                    if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { done.resume() }
                }
            }
            _ = scheduler.enqueue(Self.job(SchedulingTests.request("first"), key: "k", onFinish: { outcome in
                scheduler.release("k")  // not shared: the copy runs (its shortcut answers it)
                record("first")(outcome)
            }))
            _ = scheduler.enqueue(Self.job(SchedulingTests.request("again"), key: "k", shortcut: {
                shortcuts.add(1, ordering: .relaxed)
                return true
            }, onFinish: record("again")))
            _ = scheduler.enqueue(Self.job(SchedulingTests.request("other"), key: "o", shortcut: { false }, onFinish: record("other")))
            scheduler.start()
        }
        scheduler.stop()
        #expect(backend.admittedOrder == ["first", "other"], "the shortcut job was submitted to the model")
        #expect(shortcuts.load(ordering: .relaxed) == 1)
        #expect(finished.withLock { $0 } == ["first", "other"])
    }

    @Test("a job planned at its turn runs on what prepare returns; one prepare decides otherwise never reaches the model; expired ones are never prepared")
    func prepareAtAdmission() async throws {
        let backend = ScriptedBackend(confidences: [:])
        let scheduler = ContinuousBatchScheduler(backend: backend, settings: .init(maxBatchSize: 1, maxWait: 0, queueCapacity: 8, aging: 60))
        let prepared = Mutex<[String]>([])
        let finished = Mutex<[String: ScheduledJob.Outcome]>([:])
        func lazy(_ id: String, deadline: Date? = nil, into prompt: String?, _ done: @escaping @Sendable (String, ScheduledJob.Outcome) -> Void) -> ScheduledJob {
            ScheduledJob(request: SchedulingTests.request(id, deadline: deadline), input: .init(promptTokens: []), prepare: {
                prepared.withLock { $0.append(id) }
                return prompt.map { .init(promptTokens: $0.unicodeScalars.map { Int32(bitPattern: $0.value) }) }  // ScriptedBackend.tokenize
            }, enqueuedAt: Date(), shareKey: nil, shortcut: nil) { done(id, $0) }
        }
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let remaining = Atomic(2)
            let record: @Sendable (String, ScheduledJob.Outcome) -> Void = { id, outcome in
                finished.withLock { $0[id] = outcome }
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { done.resume() }
            }
            _ = scheduler.enqueue(lazy("late", deadline: Date().addingTimeInterval(-1), into: "never", record))
            _ = scheduler.enqueue(lazy("decided", into: nil, record))
            _ = scheduler.enqueue(lazy("asked", into: "the grounded prompt", record))
            scheduler.start()
        }
        scheduler.stop()
        #expect(backend.admittedOrder == ["the grounded prompt"])
        #expect(prepared.withLock { $0 } == ["decided", "asked"], "an expired job was prepared")
        let outcomes = finished.withLock { $0 }
        guard case .expired? = outcomes["late"], case .completed? = outcomes["asked"] else {
            Issue.record("outcomes \(outcomes)")
            return
        }
        #expect(outcomes["decided"] == nil, "the scheduler finished a job its prepare had decided")
    }

    @Test("takeQueued takes only the queued jobs of one key, in order; requeue puts them back first, and is refused after stop")
    func takeAndRequeue() throws {
        let backend = EndlessBackend()
        let scheduler = ContinuousBatchScheduler(backend: backend, settings: .init(maxBatchSize: 1, maxWait: 0, queueCapacity: 4, aging: 60))
        let requests = (0..<4).map { SchedulingTests.request("q\($0)", offset: Int64($0)) }
        for (request, key) in zip(requests, ["k", "k", "o", "k"]) { #expect(scheduler.enqueue(Self.job(request, key: key))) }
        scheduler.start()
        #expect(backend.submitted.wait(timeout: .now() + 10) == .success, "the first job started")
        let taken = scheduler.takeQueued(sharing: "k")
        #expect(taken.map(\.request.requestID) == ["q1", "q3"], "running q0 and q2 of another key are not taken")
        #expect(scheduler.takeQueued(sharing: "k").isEmpty)
        for offset in 4...6 { #expect(scheduler.enqueue(Self.job(SchedulingTests.request("q\(offset)", offset: Int64(offset)), key: "o"))) }
        #expect(!scheduler.enqueue(Self.job(SchedulingTests.request("q7", offset: 7), key: "o")), "the queue is full")
        // Requeued jobs go back anyway (they were held already), at the head.
        #expect(scheduler.requeue(taken).isEmpty)
        #expect(scheduler.depth == 7)
        let handedBack = scheduler.stop(until: Date().addingTimeInterval(0.2))
        #expect(handedBack.map(\.offset) == [1, 3, 2, 4, 5, 6, 0], "requeued jobs first, then the queue in order, then the running one")
        #expect(scheduler.requeue(taken).map(\.request.requestID) == ["q1", "q3"], "a stopped scheduler hands requeued jobs back to the caller")
    }

    /// Runs keyed jobs (request id, key) through a scheduler of `maxBatch` over a scripted
    /// model; `finish` is each one's finisher (on the scheduler's thread), then it is counted.
    /// Returns the prompts in the order they reached the model.
    static func admissions(_ jobs: [(String, String?)], maxBatch: Int, shareHold: TimeInterval = 10,
                           finish: @escaping @Sendable (ContinuousBatchScheduler, ScriptedBackend, String) -> Void) async -> [String] {
        let backend = ScriptedBackend(confidences: [:])
        let scheduler = ContinuousBatchScheduler(backend: backend, settings: .init(maxBatchSize: maxBatch, maxWait: 0, queueCapacity: 16, aging: 60,
                                                                                 shareHold: shareHold))
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            let remaining = Atomic(jobs.count)
            let count: @Sendable () -> Void = {
                if remaining.subtract(1, ordering: .acquiringAndReleasing).newValue == 0 { done.resume() }
            }
            for (id, key) in jobs {
                _ = scheduler.enqueue(Self.job(SchedulingTests.request(id), key: key, onFinish: { _ in
                    finish(scheduler, backend, id)
                    count()
                }))
            }
            scheduler.start()
        }
        scheduler.stop()
        return backend.admittedOrder
    }

    @Test("every other place goes to the question with the most copies queued; one answer shared serves them, one not shared releases them")
    func mostSharedFirst() async throws {
        let shared = Mutex<[String]>([])
        let order = await Self.admissions([("a1", "a"), ("b1", "b"), ("b2", "b"), ("b3", "b"), ("c1", "c"), ("c2", "c"), ("d1", nil)],
                                          maxBatch: 1) { scheduler, _, id in
            switch id {
            case "b1":  // answered and stored: its copies take the answer
                let taken = scheduler.takeQueued(sharing: "b")
                shared.withLock { $0 += taken.map(\.request.requestID) }
                for job in taken { job.onFinish(.answeredWithoutModel(startedAt: Date())) }
                scheduler.release("b")
            case "c1":  // escalated, not shared: its copy runs itself
                scheduler.release("c")
            default:
                break
            }
        }
        // FIFO would be a1, b1, c1, c2, d1 (b2 and b3 taken when b1 is answered).
        #expect(order == ["b1", "a1", "c1", "c2", "d1"])
        #expect(shared.withLock { $0 } == ["b2", "b3"])
    }

    @Test("a copy of a question in the batch waits for its answer instead of taking a place beside it, and runs once released")
    func copiesWaitForTheRunningQuestion() async throws {
        let seenAtFinish = Mutex<[String]>([])
        let order = await Self.admissions([("x1", "x"), ("x2", "x"), ("y1", nil)], maxBatch: 4) { scheduler, backend, id in
            if id == "x1" {
                seenAtFinish.withLock { $0 = backend.admittedOrder }
                scheduler.release("x")
            }
        }
        #expect(seenAtFinish.withLock { $0 } == ["x1", "y1"], "x2 was in the batch beside x1")
        #expect(order == ["x1", "y1", "x2"])
    }

    @Test("a finisher that never releases holds the copies back only for shareHold: none is stalled")
    func holdIsBounded() async throws {
        let order = await Self.admissions([("x1", "x"), ("x2", "x")], maxBatch: 2, shareHold: 0.2) { _, _, _ in }
        #expect(order == ["x1", "x2"])
    }

    @Test("jobs out of the queue when their partition is handed over are refused by requeue until it is assigned again")
    func requeueAfterRevocation() throws {
        let scheduler = ContinuousBatchScheduler(backend: EndlessBackend(), settings: .init(maxBatchSize: 1, maxWait: 0, queueCapacity: 8, aging: 60))
        let partition0 = KafkaTopicPartition(topic: "t", partition: 0)
        var other = SchedulingTests.request("q1", offset: 1)
        other.source = KafkaTopicPartitionOffset(topic: "t", partition: 1, offset: 1)
        for request in [SchedulingTests.request("q0", offset: 0), other] { #expect(scheduler.enqueue(Self.job(request, key: "k"))) }
        let taken = scheduler.takeQueued(sharing: "k")
        #expect(taken.count == 2)
        #expect(scheduler.dropQueued(from: [partition0]).isEmpty, "nothing of partition 0 was queued when it was revoked")
        #expect(scheduler.requeue(taken).map(\.request.requestID) == ["q0"], "the revoked partition's job came back")
        #expect(scheduler.depth == 1)
        scheduler.reclaim([partition0])
        #expect(scheduler.requeue([taken[0]]).isEmpty, "assigned again: its jobs are taken")
        #expect(scheduler.depth == 2)
    }
}
