import AuditLog
import Foundation
import Inference
import KafkaClient
import Logging

/// The worker: consumes requests, schedules them through the model, replies, escalates,
/// audits, and commits offsets only past requests whose reply and audit row exist.
public final class WorkerService: @unchecked Sendable {  // immutable references; shared state in WorkerState
    let configuration: SluiceConfiguration
    let backend: any GenerationBackend
    let audit: AuditDatabase
    let auditBatcher: AuditBatcher
    let producer: KafkaProducer
    let consumer: KafkaConsumer
    let scheduler: ContinuousBatchScheduler
    let policy: EscalationPolicy
    let limits: RequestLimits
    let state = WorkerState()
    let publishing = PublishCounter()
    let topics: TopicDirectory
    let workerID: String
    let templateVersion: String
    let logger: Logger
    /// Prometheus metrics, served on `worker.metrics_port`.
    public let metrics: WorkerMetrics

    /// - Parameters:
    ///   - configuration: validated configuration.
    ///   - backend: the model (or `EchoBackend`).
    ///   - audit: the audit log, opened for appending.
    public init(configuration: SluiceConfiguration, backend: any GenerationBackend, audit: AuditDatabase, logger: Logger) throws {
        self.configuration = configuration
        self.backend = backend
        self.audit = audit
        self.auditBatcher = AuditBatcher(database: audit)
        self.logger = logger
        let worker = configuration.worker
        templateVersion = "fnv1a-" + String(RequestCodec.stableSeed(worker.promptTemplate), radix: 16)
        workerID = worker.workerId.isEmpty ? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)" : worker.workerId
        let client = configuration.kafka.clientConfiguration
        producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: client), logger: logger)
        let state = self.state
        let gracePeriod = Double(worker.gracePeriodMs) / 1000
        let consumerHolder = ConsumerReference()
        let schedulerHolder = SchedulerReference()
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                client: client, groupID: configuration.kafka.groupId,
                sessionTimeout: .milliseconds(configuration.kafka.sessionTimeoutMs)),
            logger: logger,
            onRevocation: { partitions, lost in
                // Runs on the poll thread before the partitions move: let their running
                // requests finish (bounded by the grace period), then commit what is done.
                let revoked = Set(partitions)
                // Queued requests of these partitions never started: hand them over now
                // rather than answering them while the next owner does too.
                state.abandon(schedulerHolder.scheduler?.dropQueued(from: revoked) ?? [])
                if !lost { _ = state.waitUntilIdle(revoked, deadline: Date().addingTimeInterval(gracePeriod)) }
                let offsets = state.committable(of: revoked)
                state.revoke(partitions)
                if !lost { try? consumerHolder.consumer?.commitBlocking(offsets) }
            })
        consumerHolder.consumer = consumer
        self.consumer = consumer
        scheduler = ContinuousBatchScheduler(backend: backend, settings: .init(
            maxBatchSize: worker.maxBatchSize, maxWait: Double(worker.maxWaitMs) / 1000,
            queueCapacity: worker.queueCapacity, aging: Double(worker.agingMs) / 1000, stopStrings: worker.stopStrings))
        schedulerHolder.scheduler = scheduler
        let rules = worker.escalationRules.isEmpty ? EscalationPolicy.defaultRules : worker.escalationRules.sorted { $0.key < $1.key }.map {
            EscalationPolicy.Rule(reason: $0.key, phrases: $0.value.split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        }
        policy = EscalationPolicy(confidenceThreshold: worker.escalationThreshold, rules: rules)
        limits = RequestLimits(
            maxPromptBytes: worker.maxPromptBytes, defaultMaxTokens: worker.defaultMaxTokens,
            maxTokensLimit: worker.maxTokensLimit, defaultTopic: configuration.topics.replies, batchTopics: Set(worker.batchTopics))
        topics = TopicDirectory(producer: producer)
        metrics = WorkerMetrics(model: backend.identity, worker: workerID, latencyObjective: .milliseconds(configuration.worker.latencyObjectiveMs))
        let metrics = self.metrics
        scheduler.onStep = { batch, duration in
            metrics.batchSize.record(Double(batch))
            metrics.interTokenLatency.record(duration)
        }
    }

    /// True once partitions are assigned (the model is loaded before the service exists).
    public var isReady: Bool { !state.withLock { state.assigned.isEmpty } }

    /// Runs until the task is cancelled (SIGTERM/SIGINT), then shuts down gracefully: stop
    /// fetching, finish running requests within the grace period, flush, commit, leave.
    public func run() async throws {
        try consumer.subscribe(topics: configuration.topics.requests)
        scheduler.start()
        logger.info("worker started", metadata: ["worker": "\(workerID)", "model": "\(backend.identity.name)", "topics": "\(configuration.topics.requests)"])
        let events = Task { await followEvents() }
        let committer = Task { await commitPeriodically() }
        let lag = Task { await measureLag() }
        let port = configuration.worker.metricsPort
        let endpoint = port > 0 ? Task { [metrics, state] in
            do {
                try await HealthEndpoint(metrics: metrics, isReady: { !state.withLock { state.assigned.isEmpty } }, port: port).run()
            } catch {
                logger.error("metrics endpoint failed", metadata: ["port": "\(port)", "error": "\(error)"])
            }
        } : nil
        do {
            for try await message in consumer.messages {
                await handle(message)
            }
        } catch {
            logger.error("consumer failed", metadata: ["error": "\(error)"])
        }
        logger.info("stopping: no new requests; finishing running ones")
        scheduler.stop()
        let deadline = Date().addingTimeInterval(Double(configuration.worker.gracePeriodMs) / 1000)
        await publishing.waitUntilIdle(deadline: deadline)
        committer.cancel()
        try? await producer.flush(timeout: .seconds(10))
        // A final synchronous commit of everything finished (async commits may still be in flight).
        let finished = state.committable(of: state.withLock { state.assigned })
        if !finished.isEmpty {
            do {
                try await consumer.commit(finished)
            } catch {
                logger.error("final commit failed; finished requests will be redelivered and skipped as audited", metadata: ["error": "\(error)"])
            }
        }
        try? await consumer.close()
        try? await producer.close()
        events.cancel()
        lag.cancel()
        endpoint?.cancel()
        logger.info("worker stopped")
    }

    private func followEvents() async {
        for await event in consumer.events {
            switch event {
            case .partitionsAssigned(let partitions):
                if state.assign(partitions) { try? consumer.pause(partitions) }
                updateAssignmentMetrics()
            case .partitionsRevoked(let partitions, _):
                metrics.forgetLag(of: partitions)  // the next owner reports it; a stale value would double-count
                updateAssignmentMetrics()
            case .error(let error):
                logger.warning("kafka", metadata: ["error": "\(error)"])
            default:
                break
            }
        }
    }

    private func updateAssignmentMetrics() {
        let count = state.withLock { state.assigned.count }
        metrics.assignedPartitions.set(Double(count))
        metrics.ready.set(count > 0 ? 1.0 : 0.0)
    }

    /// Consumer lag per owned partition, every 5 s: high watermark − next offset to consume.
    private func measureLag() async {
        while !Task.isCancelled {
            for (partition, position) in state.assignedPositions {
                guard let (_, high) = try? await consumer.watermarks(for: partition, timeout: .seconds(2)) else { continue }
                var next = position ?? 0
                if position == nil, let committed = try? await consumer.committedOffsets(for: [partition]).first?.offset, committed >= 0 {
                    next = committed
                }
                metrics.lag(partition).set(Double(max(0, high - next)))
            }
            try? await Task.sleep(for: .seconds(5))
        }
    }

    private func commitPeriodically() async {
        let interval = Duration.milliseconds(configuration.worker.commitIntervalMs)
        while !Task.isCancelled {
            try? await Task.sleep(for: interval)
            guard let offsets = state.takeCommittable(), !offsets.isEmpty else { continue }
            do {
                try consumer.storeOffsets(offsets)
                try consumer.commitAsync()
            } catch {
                logger.warning("commit failed; will retry", metadata: ["error": "\(error)"])
            }
        }
    }

    // MARK: - One request

    private func handle(_ message: KafkaConsumerMessage) async {
        let partition = message.topicPartition
        state.begin(partition, offset: message.offset)
        let request: InferenceRequest
        do {
            request = try RequestCodec.decode(message, limits: limits)
        } catch {
            await reject(message, error)
            return
        }
        if await !topics.exists(request.replyTopic) {
            await reject(message, RequestRejection(
                code: "unknown_reply_topic", message: "reply topic \(request.replyTopic) does not exist",
                requestID: request.requestID, replyTopic: nil, replyPartition: nil, correlationID: request.correlationID))
            return
        }
        // Already audited: its reply was delivered before the audit row was written.
        if (try? audit.record(requestID: request.requestID)) != nil {
            logger.info("request already answered; skipping", metadata: ["request_id": "\(request.requestID)"])
            finish(message.topicPartition, message.offset)
            return
        }
        let modelInput = backend is EchoBackend
            ? request.prompt : configuration.worker.promptTemplate.replacingOccurrences(of: "{prompt}", with: request.prompt)
        let tokens = backend.tokenize(modelInput)
        if tokens.count > configuration.worker.maxPromptTokens {
            await reject(message, RequestRejection(
                code: "prompt_too_long", message: "the prompt has \(tokens.count) tokens; the limit is \(configuration.worker.maxPromptTokens)",
                requestID: request.requestID, replyTopic: request.replyTopic, replyPartition: request.replyPartition,
                correlationID: request.correlationID))
            return
        }
        let accepted = request
        let job = ScheduledJob(request: accepted, promptTokens: tokens, enqueuedAt: Date()) { [self] outcome in
            publishing.begin()
            Task {
                await self.complete(accepted, outcome)
                self.publishing.end()
            }
        }
        while !scheduler.enqueue(job) {
            try? await Task.sleep(for: .milliseconds(10))  // full: wait for room (consumption is paused)
        }
        // Memory is bounded by requests held anywhere between consumption and commit
        // (queued, decoding, or publishing), not only by the scheduler's queue.
        let held = state.inFlight
        metrics.inFlight.set(Double(held))
        metrics.queueDepth.set(Double(scheduler.depth))
        if held >= configuration.worker.queueHighWater, state.setPaused(true) {
            let assigned = Array(state.withLock { state.assigned })
            try? consumer.pause(assigned)
            logger.info("queue at high water: partitions paused", metadata: ["depth": "\(held)"])
        }
    }

    private func finish(_ partition: KafkaTopicPartition, _ offset: Int64) {
        _ = state.finish(partition, offset: offset)
        metrics.inFlight.set(Double(state.inFlight))
        metrics.queueDepth.set(Double(scheduler.depth))
        if state.inFlight <= configuration.worker.queueLowWater, state.setPaused(false) {
            let assigned = Array(state.withLock { state.assigned })
            try? consumer.resume(assigned)
            logger.info("queue below low water: partitions resumed")
        }
    }

    private func complete(_ request: InferenceRequest, _ outcome: ScheduledJob.Outcome) async {
        let now = Date()
        var reply = InferenceReply(
            requestID: request.requestID, status: .ok, escalate: false, model: backend.identity, worker: workerID, metadata: request.metadata)
        var record = AuditRecord(
            requestID: request.requestID, receivedAt: request.receivedAt, completedAt: now, route: .auto, status: .ok, workerID: workerID)
        var answer: String?
        switch outcome {
        case .completed(let completion, let startedAt):
            let reason = policy.reason(prompt: request.prompt, confidence: completion.confidence)
            answer = completion.text
            reply.text = completion.text
            reply.confidence = completion.confidence
            reply.escalate = reason != nil
            reply.escalationReason = reason
            reply.usage = .init(promptTokens: completion.promptTokens, completionTokens: completion.completionTokens)
            reply.timings = Self.timings(request, startedAt: startedAt, now: now)
            record.startedAt = startedAt
            record.promptTokens = Int64(completion.promptTokens)
            record.completionTokens = Int64(completion.completionTokens)
            record.confidence = completion.confidence
            record.route = reason == nil ? .auto : .escalated
            record.escalationReason = reason
        case .expired:
            reply.status = .expired
            reply.errorCode = "deadline_exceeded"
            reply.errorMessage = "the deadline passed before inference started"
            record.status = .expired
            record.errorCode = "deadline_exceeded"
        case .failed(let error, let startedAt):
            reply.status = .error
            reply.errorCode = "inference_failed"
            reply.errorMessage = error.message
            record.startedAt = startedAt
            record.status = .error
            record.errorCode = "inference_failed"
            record.errorMessage = error.message
        }
        fill(&record, from: request)
        if case .completed(let completion, let startedAt) = outcome {
            metrics.queueTime.record(Duration.seconds(startedAt.timeIntervalSince(request.receivedAt)))
            if let first = completion.timeToFirstToken { metrics.timeToFirstToken.record(Duration.seconds(first)) }
            metrics.tokens.increment(by: Int64(completion.completionTokens))
        }
        await deliver(reply, to: request.replyTopic, partition: request.replyPartition, correlationID: request.correlationID, key: request.conversationID)
        if reply.escalate {
            await deliverEscalation(request, reply: reply, answer: answer ?? "")
        }
        await writeAudit(AuditEntry(record: record, prompt: request.prompt, response: answer, customerRef: request.customerRef))
        metrics.requests(reply.status.rawValue).increment()
        if let reason = reply.escalationReason { metrics.escalations(reason).increment() }
        metrics.endToEnd.record(Duration.seconds(Date().timeIntervalSince(request.receivedAt)))
        finish(request.source.topicPartition, request.source.offset)
    }

    private func fill(_ record: inout AuditRecord, from request: InferenceRequest) {
        record.conversationID = request.conversationID
        record.channel = request.channel
        record.topic = request.source.topic
        record.partition = Int64(request.source.partition)
        record.offset = request.source.offset
        record.modelName = backend.identity.name
        record.modelQuantization = backend.identity.quantization
        record.modelSHA256 = backend.identity.sha256
        record.promptTemplateVersion = templateVersion
        record.samplingParameters = "{\"max_tokens\":\(request.maxTokens),\"temperature\":\(request.temperature),\"top_p\":\(request.topP)}"
        record.seed = Int64(bitPattern: request.seed)
        record.confidenceMethod = "geometric_mean_token_probability"
        record.confidenceThreshold = configuration.worker.escalationThreshold
        if let started = record.startedAt {
            record.queueMs = Int64(started.timeIntervalSince(request.receivedAt) * 1000)
            record.inferenceMs = Int64(record.completedAt.timeIntervalSince(started) * 1000)
        }
    }

    private static func timings(_ request: InferenceRequest, startedAt: Date, now: Date) -> InferenceReply.Timings {
        .init(queuedMs: Int(startedAt.timeIntervalSince(request.receivedAt) * 1000),
              inferenceMs: Int(now.timeIntervalSince(startedAt) * 1000),
              totalMs: Int(now.timeIntervalSince(request.receivedAt) * 1000))
    }

    // MARK: - Rejections

    private func reject(_ message: KafkaConsumerMessage, _ rejection: RequestRejection) async {
        logger.warning("request rejected", metadata: ["code": "\(rejection.code)", "topic": "\(message.topic)", "offset": "\(message.offset)"])
        if let replyTopic = rejection.replyTopic, await topics.exists(replyTopic) {
            let reply = InferenceReply(
                requestID: rejection.requestID, status: .rejected, escalate: false, worker: workerID,
                errorCode: rejection.code, errorMessage: rejection.message)
            await deliver(reply, to: replyTopic, partition: rejection.replyPartition, correlationID: rejection.correlationID, key: nil)
        }
        var headers = message.headers
        headers += [
            KafkaHeader(name: "sluice-error-code", string: rejection.code),
            KafkaHeader(name: "sluice-error-message", string: rejection.message),
            KafkaHeader(name: "sluice-original-topic", string: message.topic),
            KafkaHeader(name: "sluice-original-partition", string: String(message.partition)),
            KafkaHeader(name: "sluice-original-offset", string: String(message.offset)),
            KafkaHeader(name: "sluice-worker", string: workerID),
        ]
        await send(KafkaProducerMessage(topic: configuration.topics.deadLetters, key: message.key, value: message.value, headers: headers))
        // One audit row per record, keyed by the record's position (a redelivered record finds
        // its row; a corrected resend under the same request id is still answered).
        let requestID = "\(rejection.requestID ?? "-")@\(message.topic):\(message.partition):\(message.offset)"
        var record = AuditRecord(requestID: requestID, receivedAt: Date(), completedAt: Date(), route: .auto, status: .rejected, workerID: workerID)
        record.topic = message.topic
        record.partition = Int64(message.partition)
        record.offset = message.offset
        record.errorCode = rejection.code
        record.errorMessage = rejection.message
        let prompt = String(decoding: message.value.prefix(4096), as: UTF8.self)
        await writeAudit(AuditEntry(record: record, prompt: prompt, response: nil, customerRef: nil))
        metrics.requests("rejected").increment()
        finish(message.topicPartition, message.offset)
    }

    // MARK: - Output, retried until it succeeds (nothing is committed before it has)

    private func deliver(_ reply: InferenceReply, to topic: String, partition: Int32?, correlationID: [UInt8]?, key: String?) async {
        await send(KafkaProducerMessage(
            topic: topic, partition: partition, key: key.map { Array($0.utf8) }, value: reply.encoded(),
            headers: InferenceReply.headers(correlationID: correlationID, requestID: reply.requestID)))
    }

    private func deliverEscalation(_ request: InferenceRequest, reply: InferenceReply, answer: String) async {
        let transcript: [String: Any] = [
            "request_id": request.requestID, "conversation_id": request.conversationID ?? NSNull(), "channel": request.channel ?? NSNull(),
            "reason": reply.escalationReason ?? "", "confidence": reply.confidence ?? NSNull(),
            "transcript": [["role": "customer", "content": request.prompt], ["role": "assistant", "content": answer]],
            "worker": workerID,
        ]
        let value = (try? JSONSerialization.data(withJSONObject: transcript, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        await send(KafkaProducerMessage(
            topic: configuration.topics.escalations, key: request.conversationID.map { Array($0.utf8) }, value: Array(value),
            headers: InferenceReply.headers(correlationID: request.correlationID, requestID: request.requestID)))
    }

    private func send(_ message: KafkaProducerMessage) async {
        var attempt = 0
        while true {
            do {
                try await producer.send(message)
                return
            } catch {
                attempt += 1
                metrics.publishFailures.increment()
                logger.error("publish failed; retrying", metadata: ["topic": "\(message.topic)", "attempt": "\(attempt)", "error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(min(5_000, 100 * attempt)))
            }
        }
    }

    private func writeAudit(_ entry: AuditEntry) async {
        var attempt = 0
        while true {
            let start = ContinuousClock.now
            do {
                _ = try await auditBatcher.record(entry)
                metrics.auditWrite.record(ContinuousClock.now - start)
                return
            } catch {
                attempt += 1
                metrics.auditFailures.increment()
                logger.error("audit write failed; retrying (offsets stay uncommitted)", metadata: ["attempt": "\(attempt)", "error": "\(error)"])
                try? await Task.sleep(for: .milliseconds(min(5_000, 100 * attempt)))
            }
        }
    }
}

/// Counts requests between their finish and the end of their publishing, so shutdown can
/// wait for them.
final class PublishCounter: @unchecked Sendable {  // behind `condition`
    private let condition = NSCondition()
    private var count = 0

    func begin() {
        condition.lock()
        count += 1
        condition.unlock()
    }

    func end() {
        condition.lock()
        count -= 1
        condition.broadcast()
        condition.unlock()
    }

    func waitUntilIdle(deadline: Date) async {
        let condition = self.condition
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            DispatchQueue.global().async {
                condition.lock()
                while self.count > 0, condition.wait(until: deadline) {}
                condition.unlock()
                continuation.resume()
            }
        }
    }
}

/// Which topics exist, from cluster metadata (cached; refreshed on a miss at most every 5 s).
actor TopicDirectory {
    private let producer: KafkaProducer
    private var known: Set<String> = []
    private var refreshedAt = Date.distantPast

    init(producer: KafkaProducer) { self.producer = producer }

    func exists(_ topic: String) async -> Bool {
        if known.contains(topic) { return true }
        if Date().timeIntervalSince(refreshedAt) > 5 {
            refreshedAt = Date()
            if let metadata = try? await producer.metadata() { known = Set(metadata.topics.filter { $0.error == nil }.map(\.name)) }
        }
        return known.contains(topic)
    }
}

/// Lets the revocation callback, created before the consumer exists, reach it. Set once,
/// before the consumer subscribes; read only afterwards.
final class ConsumerReference: @unchecked Sendable {
    var consumer: KafkaConsumer?
}

/// The same for the scheduler.
final class SchedulerReference: @unchecked Sendable {
    var scheduler: ContinuousBatchScheduler?
}
