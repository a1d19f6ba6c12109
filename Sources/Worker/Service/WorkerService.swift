import AuditLog
import Foundation
import Inference
import KafkaClient
import Knowledge
import Logging
import ServiceLifecycle
import Synchronization
import UnixSignals

/// The worker: consumes requests, schedules them through the model, replies, escalates,
/// audits, and commits offsets only past requests whose reply and audit row exist.
public final class WorkerService: @unchecked Sendable {  // immutable references; shared state in WorkerState
    let configuration: SluiceConfiguration
    let backend: any GenerationBackend
    let audit: AuditDatabase
    /// Replies, escalations and dead letters, with retries.
    let output: OutputPublisher
    /// Audit rows, with retries.
    let auditWriter: AuditWriter
    /// Automated answers reused by identical later questions (nil when `cache.enabled` is off).
    let answerCache: AnswerCache?
    let producer: KafkaProducer
    let consumer: KafkaConsumer
    let scheduler: ContinuousBatchScheduler
    let policy: EscalationPolicy
    /// Retrieval, grounded prompt and escalation decision (shared with `sluice eval`).
    let answers: AnswerPipeline
    let limits: RequestLimits
    let state: WorkerState
    let publishing = PublishCounter()
    let topics: TopicDirectory
    let destinations: ReplyDestinationPolicy
    let fatal = FatalLatch()
    /// The conditions behind /healthz and /readyz.
    public let health: HealthMonitor
    /// Value bytes a dead-letter copy keeps (from the producer's `message.max.bytes`).
    let deadLetterValueBytes: Int
    let shutdown = ShutdownFlag()
    /// Where the intake's hold-off near the high water blocks (never a cooperative thread).
    private let intakeHoldQueue = DispatchQueue(label: "sluice.worker.intake-hold")
    let stopping = ShutdownDeadline()
    /// When the graceful shutdown began (for the phases' log line).
    let stoppingSince = Mutex<ContinuousClock.Instant?>(nil)
    let exitOnOverrun = Atomic(false)
    let workerID: String
    let templateVersion: String
    /// The reply and audit row each kind of end is written as.
    let records: RequestRecords
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
        self.logger = logger
        let worker = configuration.worker
        workerID = worker.workerId.isEmpty ? "\(ProcessInfo.processInfo.hostName)-\(ProcessInfo.processInfo.processIdentifier)" : worker.workerId
        let client = configuration.kafka.clientConfiguration
        producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: client), logger: logger)
        let state = WorkerState(highWater: worker.queueHighWater, lowWater: worker.queueLowWater)
        self.state = state
        let gracePeriod = Double(worker.gracePeriodMs) / 1000
        let consumerHolder = ConsumerReference()
        let schedulerHolder = SchedulerReference()
        let stopping = self.stopping
        let consumer = try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(
                client: client, groupID: configuration.kafka.groupId,
                sessionTimeout: .milliseconds(configuration.kafka.sessionTimeoutMs)),
            logger: logger,
            onAssignment: { partitions in
                // Runs on the poll thread before any message of these partitions is returned:
                // the tracker owns them before one of their requests can finish.
                state.assign(partitions)
                schedulerHolder.scheduler?.reclaim(partitions)
            },
            onIdlePositions: { positions in state.advance(positions) },
            onRevocation: { partitions, lost in
                // Runs on the poll thread before the partitions move: let their running
                // requests finish (bounded by the grace period), then commit what is done.
                let revoked = Set(partitions)
                // Queued requests of these partitions never started: hand them over now
                // rather than answering them while the next owner does too.
                state.abandon(schedulerHolder.scheduler?.dropQueued(from: revoked) ?? [])
                if !lost { _ = state.waitUntilIdle(revoked, deadline: stopping.bound(grace: gracePeriod)) }
                let offsets = state.revoke(partitions)
                if !lost { try? consumerHolder.consumer?.commitBlocking(offsets) }
            })
        consumerHolder.consumer = consumer
        self.consumer = consumer
        // Backpressure: the state machine decides, the consumer does (under the state's lock).
        state.apply = { [logger] action in
            switch action {
            case .pause(let partitions):
                try? consumer.pause(partitions)
                logger.info("in-flight requests at high water: partitions paused", metadata: ["high_water": "\(worker.queueHighWater)"])
            case .resume(let partitions):
                try? consumer.resume(partitions)
                logger.info("in-flight requests below low water: partitions resumed", metadata: ["low_water": "\(worker.queueLowWater)"])
            }
        }
        scheduler = ContinuousBatchScheduler(backend: backend, settings: .init(worker))
        schedulerHolder.scheduler = scheduler
        answers = try AnswerPipeline(configuration: configuration, backend: backend)
        policy = answers.policy
        templateVersion = answers.templateVersion
        records = RequestRecords(
            model: backend.identity, workerID: workerID, templateVersion: answers.templateVersion,
            confidenceMethod: answers.knowledge == nil ? "geometric_mean_token_probability" : "grounded_v1",
            confidenceThreshold: worker.escalationThreshold)
        limits = RequestLimits(configuration)
        topics = TopicDirectory(producer: producer)
        deadLetterValueBytes = DeadLetterCopy.maxValueBytes(
            messageMaxBytes: configuration.kafka.properties["message.max.bytes"].flatMap { Int($0) } ?? 1_000_000)
        destinations = ReplyDestinationPolicy(
            defaultTopic: configuration.topics.replies, allowed: worker.replyTopics,
            forbidden: configuration.topics.requests + [configuration.topics.escalations, configuration.topics.deadLetters])
        let maxPollInterval = configuration.kafka.properties["max.poll.interval.ms"].flatMap { Int($0) } ?? 300_000
        health = HealthMonitor(
            fatal: fatal, auditFailureLimit: .milliseconds(worker.auditUnhealthyAfterMs),
            consumeStallLimit: .milliseconds(maxPollInterval / 2), schedulerStallLimit: .milliseconds(worker.schedulerStallMs),
            schedulerStall: { [scheduler] in scheduler.stalledFor })
        metrics = WorkerMetrics(model: backend.identity, worker: workerID, latencyObjective: .milliseconds(configuration.worker.latencyObjectiveMs))
        let metrics = self.metrics
        output = OutputPublisher(
            producer: producer, topics: topics, defaultTopic: limits.defaultTopic, escalationsTopic: configuration.topics.escalations,
            deadLettersTopic: configuration.topics.deadLetters, workerID: workerID, shutdown: shutdown, fatal: fatal, metrics: metrics, logger: logger)
        auditWriter = AuditWriter(batcher: AuditBatcher(database: audit), shutdown: shutdown, health: health, metrics: metrics, logger: logger)
        let cache = configuration.cache
        answerCache = cache.enabled
            ? try AnswerCache(path: cache.path(auditDB: configuration.audit.db), maxEntries: cache.maxEntries, maxAge: TimeInterval(cache.maxAgeS))
            : nil
        let reported = Mutex(PrefillCounts())
        scheduler.onStep = { batch, duration, prefill in
            metrics.batchSize.record(Double(batch))
            metrics.interTokenLatency.record(duration)
            let previous = reported.withLock { counts in
                defer { counts = prefill }
                return counts
            }
            if prefill.computed > previous.computed { metrics.prefillTokens.increment(by: Int64(prefill.computed - previous.computed)) }
            if prefill.reused > previous.reused { metrics.prefixCacheHitTokens.increment(by: Int64(prefill.reused - previous.reused)) }
            metrics.prefixCacheBytes.set(to: Double(prefill.cacheBytes))
        }
    }

    /// True once partitions are assigned (the model is loaded before the service exists).
    public var isReady: Bool { !state.assigned.isEmpty }

    /// Runs every part of the worker in one `ServiceGroup` until a graceful shutdown — SIGTERM
    /// or SIGINT when `handlingSignals`, the task's cancellation, or a fatal error — then stops it
    /// in order, bounded by `worker.grace_period_ms` end to end (see ``makeParts()``).
    /// Throws ``WorkerFatalError`` after a fatal error.
    ///
    /// - Parameter exitOnOverrun: exit the process (status 0) if the orderly stop has not
    ///   ended 3.5 s past the grace period — a broker that never answers the group leave, say.
    ///   Nothing unfinished was committed, so the partitions' next owner answers it. For the
    ///   `sluice run` process only.
    public func run(handlingSignals: Bool = false, exitOnOverrun: Bool = false) async throws {
        let gracefulShutdownSignals: [UnixSignal] = handlingSignals ? [.sigterm, .sigint] : []
        self.exitOnOverrun.store(exitOnOverrun, ordering: .relaxed)
        try consumer.subscribe(topics: configuration.topics.requests)
        scheduler.start()
        announce()
        var group = ServiceGroupConfiguration(services: makeParts(), gracefulShutdownSignals: gracefulShutdownSignals, logger: logger)
        group.maximumGracefulShutdownDuration = .milliseconds(configuration.worker.gracePeriodMs) + .seconds(3)
        let services = ServiceGroup(configuration: group)
        // Cancelling the caller's task asks for the same orderly stop (structured cancellation
        // would cancel every part at once, in no order).
        let running = Task { try await services.run() }
        do {
            try await withTaskCancellationHandler { try await running.value } onCancel: {
                Task { await services.triggerGracefulShutdown() }
            }
        } catch {
            logger.error("worker parts ended with an error", metadata: ["error": "\(error)"])
            if fatal.reason == nil { fatal.trip("\(error)") }
        }
        if let reason = fatal.reason {
            logger.error("worker stopped after a fatal error", metadata: ["reason": "\(reason)"])
            throw WorkerFatalError(reason: reason)
        }
        logger.info("worker stopped")
    }

    /// The worker's long-running parts, in start order. A graceful shutdown stops them in
    /// reverse, each only once the one after it has ended:
    /// 1. intake: stop fetching at once (the grace period starts);
    /// 2. scheduler: queued requests handed back (never committed), running ones get until the
    ///    deadline, then are cancelled and handed back;
    /// 3. publisher: replies, escalations and audit rows in progress get what is left; then
    ///    retry loops give up and the producer flushes;
    /// 4. committer: the final commit of finished offsets, then leave the group (the
    ///    partitions move at once) and close the producer;
    /// 5. consumer events, lag monitor, and last the HTTP endpoint (probes see the drain).
    func makeParts() -> [ServiceGroupConfiguration.ServiceConfiguration] {
        var parts: [ServiceGroupConfiguration.ServiceConfiguration] = []
        let port = configuration.worker.metricsPort
        if port > 0 {
            let endpoint = HealthEndpoint(metrics: metrics, isReady: { [state] in !state.assigned.isEmpty }, health: health, port: port)
            parts.append(.init(service: WorkerPart("http endpoint") { [logger] in
                do {
                    try await endpoint.run()
                } catch {
                    // The worker serves without it (an orchestrator's probe will say so).
                    logger.error("metrics endpoint failed", metadata: ["port": "\(port)", "error": "\(error)"])
                    try? await gracefulShutdown()
                }
            }, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup))
        }
        parts += [
            WorkerPart("consumer events") { [self] in await followEvents() },
            WorkerPart("lag monitor") { [self] in await measureLag() },
            WorkerPart("committer") { [self] in await commitUntilStopped() },
            WorkerPart("publisher") { [self] in await drainPublishing() },
            WorkerPart("scheduler") { [self] in await stopScheduler() },
            WorkerPart("intake") { [self] in await consumeUntilStopped() },
        ].map { .init(service: $0, successTerminationBehavior: .gracefullyShutdownGroup, failureTerminationBehavior: .gracefullyShutdownGroup) }
        return parts
    }

    private func announce() {
        logger.info("worker started", metadata: ["worker": "\(workerID)", "model": "\(backend.identity.name)", "topics": "\(configuration.topics.requests)"])
        if let knowledge = answers.knowledge {
            let version = (try? knowledge.version()) ?? "unreadable"
            if version == "kb-empty" {
                logger.warning("the knowledge base is empty: every question will be escalated (no_knowledge); run `sluice kb import FILE`",
                               metadata: ["db": "\(knowledge.path)"])
            } else {
                logger.info("grounded answers", metadata: ["knowledge": "\(version)", "mode": "\(answers.settings.answerMode)", "db": "\(knowledge.path)"])
            }
        } else {
            logger.warning("answers are not grounded (knowledge.db is empty or the model is echo)")
        }
    }

    /// Intake: consumes and handles records until the graceful shutdown (or a fatal error,
    /// which starts it); the record being handled when it comes is cancelled and handed back.
    private func consumeUntilStopped() async {
        let loop = Task { [self] in
            do {
                // Pausing at the high water holds at most one poll's batch more than it.
                let batchSize = min(64, max(1, configuration.worker.queueHighWater / 4))
                for try await message in consumer.messages(batchSize: batchSize) {
                    health.beginHandling()
                    await handle(message)
                    health.endHandling()
                    await holdOffNearHighWater(batchSize: batchSize)
                }
            } catch {
                fatal.trip("consumer failed: \(error)")
                logger.error("consumer failed", metadata: ["error": "\(error)"])
            }
        }
        fatal.onTrip { loop.cancel() }
        await withGracefulShutdownHandler {
            await withTaskCancellationHandler { await loop.value } onCancel: { loop.cancel() }
        } onGracefulShutdown: {
            loop.cancel()
        }
        let grace = configuration.worker.gracePeriodMs
        stopping.begin(grace: Double(grace) / 1000)
        stoppingSince.withLock { $0 = .now }
        logger.info("stopping: no new requests; finishing running ones", metadata: ["grace_ms": "\(grace)"])
        if exitOnOverrun.load(ordering: .relaxed) {
            let overrun = Duration.milliseconds(grace) + .milliseconds(3_500)
            Task.detached { [logger] in
                try? await Task.sleep(for: overrun)
                logger.error("shutdown overran the grace period; exiting now (unfinished requests stay uncommitted)",
                             metadata: ["after_ms": "\(overrun.wholeMilliseconds)"])
                _exit(0)  // at once: no exit handlers while the client's threads still run
            }
        }
    }

    /// Backpressure before the high water: when the next poll's batch could reach it, stop
    /// taking until the requests held fall to the low water, for up to
    /// `worker.intake_hold_ms`. Pausing partitions discards what librdkafka has fetched of
    /// them and costs a fetch round trip to resume (at a peak, drains ran at half speed in
    /// pause/resume cycles), so the pause is kept for a downstream that stays stalled (the
    /// broker or the audit log): when the hold expires, the loop polls again, which keeps
    /// rebalances served, and the high water pauses the partitions.
    private func holdOffNearHighWater(batchSize: Int) async {
        let worker = configuration.worker
        guard worker.intakeHoldMs > 0, state.inFlight >= worker.queueHighWater - batchSize else { return }
        let deadline = Date().addingTimeInterval(Double(worker.intakeHoldMs) / 1000)
        let state = self.state
        let low = worker.queueLowWater + 1
        await withCheckedContinuation { continuation in
            intakeHoldQueue.async {
                _ = state.waitForRoom(below: low, deadline: deadline)
                continuation.resume()
            }
        }
    }

    /// Scheduler: runs (started before the group) until its turn, then hands back what is
    /// queued and gives running sequences until the deadline.
    private func stopScheduler() async {
        try? await gracefulShutdown()
        let deadline = stopping.begin(grace: Double(configuration.worker.gracePeriodMs) / 1000)
        let handedBack = await withCheckedContinuation { continuation in
            let scheduler = self.scheduler
            Thread.detachNewThread { continuation.resume(returning: scheduler.stop(until: deadline)) }
        }
        state.abandon(handedBack)
        if !handedBack.isEmpty { logger.info("requests handed back unanswered", metadata: ["count": "\(handedBack.count)"]) }
    }

    /// Publisher: at its turn, requests finishing (reply, escalation, audit row) get until the
    /// deadline; then retry loops give up (their records stay uncommitted) and the producer
    /// delivers what was sent.
    private func drainPublishing() async {
        try? await gracefulShutdown()
        await publishing.waitUntilIdle(deadline: stopping.begin(grace: Double(configuration.worker.gracePeriodMs) / 1000))
        shutdown.set()
        try? await producer.flush(timeout: stopping.remaining(atLeast: .milliseconds(500)))
    }

    /// Committer: stores and commits finished offsets every `worker.commit_interval_ms`; at
    /// its turn, a final synchronous commit of everything finished, then leaves the group and
    /// closes the producer.
    private func commitUntilStopped() async {
        await cancelWhenGracefulShutdown { await self.commitPeriodically() }
        let drained = stoppingSince.withLock { $0 }.map { ContinuousClock.now - $0 } ?? .zero
        // A final synchronous commit of everything finished (async commits may still be in flight).
        let finished = state.committable
        if !finished.isEmpty {
            do {
                try await consumer.commit(finished)
            } catch {
                logger.error("final commit failed; finished requests will be redelivered and skipped as audited", metadata: ["error": "\(error)"])
            }
        }
        try? await consumer.close()
        try? await producer.close(timeout: stopping.remaining(atLeast: .milliseconds(500)))
        let total = stoppingSince.withLock { $0 }.map { ContinuousClock.now - $0 } ?? .zero
        logger.info("shutdown phases", metadata: [
            "drain_ms": "\(drained.wholeMilliseconds)", "total_ms": "\(total.wholeMilliseconds)",
            "peak_in_flight": "\(state.peakInFlight)",
        ])
    }

    /// Consumer events (assignments, commit results, errors) until the consumer closes; then
    /// waits for its turn to stop.
    private func followEvents() async {
        for await event in consumer.events {
            switch event {
            case .partitionsAssigned:
                updateAssignmentMetrics()
            case .partitionsRevoked(let partitions, _):
                metrics.forgetLag(of: partitions)  // the next owner reports it; a stale value would double-count
                updateAssignmentMetrics()
            case .offsetsCommitted(.failure(let error)):
                // Offer the points again: the next interval stores and commits them anew.
                state.forgetStored()
                logger.warning("offset commit failed; will retry", metadata: ["error": "\(error)"])
            case .error(let error):
                logger.warning("kafka", metadata: ["error": "\(error)"])
            default:
                break
            }
        }
        try? await gracefulShutdown()
    }

    private func updateAssignmentMetrics() {
        let count = state.assigned.count
        metrics.assignedPartitions.set(Double(count))
        metrics.ready.set(count > 0 ? 1.0 : 0.0)
    }

    /// Consumer lag per owned partition, every 5 s: high watermark − next offset to consume.
    private func measureLag() async {
        await cancelWhenGracefulShutdown { await self.measureLagPeriodically() }
    }

    private func measureLagPeriodically() async {
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
            do {
                let stored = try state.storeCommittable { try consumer.storeOffsets($0) }
                guard !stored.isEmpty else { continue }
                try consumer.commitAsync()
            } catch {
                state.forgetStored()
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
            rejectInBackground(message, error)
            return
        }
        // Reply destinations are policy; an unusable one gets its error reply on the default topic.
        func unusable(_ code: String, _ text: String) -> RequestRejection {
            RequestRejection(code: code, message: text, requestID: request.requestID, replyTopic: limits.defaultTopic,
                             replyPartition: nil, correlationID: request.correlationID, trace: request.trace)
        }
        if let refusal = destinations.refusal(request.replyTopic) {
            rejectInBackground(message, unusable("reply_topic_not_allowed", refusal))
            return
        }
        var partitions: Int
        switch await replyTopicPartitions(request.replyTopic) {
        case .exists(let count):
            partitions = count
        case .absent:
            rejectInBackground(message, unusable("unknown_reply_topic", "reply topic \(request.replyTopic) does not exist"))
            return
        case .unusable(let reason):
            rejectInBackground(message, unusable("reply_topic_unusable", "reply topic \(request.replyTopic) cannot be used: \(reason)"))
            return
        case .unknown:
            // Shutting down while the broker did not answer: hand the record back (not committed).
            state.abandon([request.source])
            return
        }
        if let replyPartition = request.replyPartition, !(0..<Int32(clamping: partitions)).contains(replyPartition) {
            // The topic may have gained partitions since its count was cached: ask once more.
            await topics.forget(request.replyTopic)
            if case .exists(let count) = await topics.lookup(request.replyTopic) { partitions = count }
        }
        if let replyPartition = request.replyPartition, !(0..<Int32(clamping: partitions)).contains(replyPartition) {
            rejectInBackground(message, unusable(
                "invalid_reply_partition", "reply partition \(replyPartition) does not exist: \(request.replyTopic) has \(partitions)"))
            return
        }
        if let original = try? audit.record(requestID: request.requestID) {
            if original.topic == message.topic, original.partition == Int64(message.partition), original.offset == message.offset {
                // The same record again (redelivered after a crash or rebalance): already answered.
                logger.info("request already answered; skipping", metadata: ["request_id": "\(request.requestID)", "trace_id": "\(request.trace.traceID)"])
                finish(message.topicPartition, message.offset)
            } else {
                answerDuplicate(message, request, original: original)
            }
            return
        }
        // Kept until the request ends, for a dead-letter copy should it be rejected or its reply
        // fail for good: bounded to 64 KB so thousands of held requests cannot hold as many
        // large records (the record itself is not kept).
        let original = DeadLetterCopy(message, maxValueBytes: min(deadLetterValueBytes, 65_536))
        let accepted = request
        if request.hasExpired() {
            // Past its deadline already: answered `expired` at once, without a cache lookup,
            // retrieval or the model, so a backlog of stale requests drains at pipeline speed.
            publishing.begin()
            Task {
                await self.complete(accepted, .expired, plan: nil, original: original)
                self.publishing.end()
            }
            return
        }
        // A question answered before is answered from the cache before any planning (the
        // retrieval and the prompt's tokenization are most of a hit's cost otherwise).
        let intakeKey = cacheKey(request, knowledgeVersion: currentKnowledgeVersion())
        if let hit = cachedAnswer(intakeKey) {
            publishing.begin()
            Task {
                await self.completeFromCache(accepted, hit, original: original)
                self.publishing.end()
            }
            return
        }
        let planned = PlannedAnswer()
        let job: ScheduledJob
        if policy.ruleReasons(prompt: request.prompt).isEmpty {
            // Planned (retrieval, tokenization) only when its turn comes: in a peak most queued
            // misses expire or take an identical question's answer first, and cost nothing more.
            job = modelJob(accepted, original: original, shareKey: intakeKey, planned: planned) { [self] in
                prepare(accepted, original: original, planned: planned)
            }
        } else {
            // Escalated by a rule (a customer asking for a human, fraud, a complaint): planned
            // now, so one the model has nothing to add to is handed over at once, not queued.
            guard let plan = await plan(request) else {
                state.abandon([request.source])  // shutting down: the next owner answers
                return
            }
            guard let input = settle(accepted, plan: plan, original: original, planned: planned) else { return }
            job = modelJob(accepted, original: original, shareKey: intakeKey, planned: planned, input: input, prepare: nil)
        }
        while !scheduler.enqueue(job) {
            // Full: wait for room (consumption is paused). Ends on shutdown: the record is handed back.
            do {
                try await Task.sleep(for: .milliseconds(10))
            } catch {
                state.abandon([request.source])
                return
            }
        }
        // Memory is bounded by requests held anywhere between consumption and commit
        // (queued, decoding, or publishing), not only by the scheduler's queue.
        let held = state.inFlight
        metrics.inFlight.set(Double(held))
        metrics.queueDepth.set(Double(scheduler.depth))
    }

    /// The scheduler's job for a request the model may answer: `prepare` plans it when its turn
    /// comes (nil: `input` is already planned). Should an identical question be answered while
    /// it waits, it takes that answer (`shareKey`, the answer cache's key at intake).
    private func modelJob(_ request: InferenceRequest, original: DeadLetterCopy, shareKey: String?,
                          planned: PlannedAnswer, input: ScheduledJob.Input = .init(promptTokens: []),
                          prepare: (@Sendable () -> ScheduledJob.Input?)?) -> ScheduledJob {
        var shortcut: (@Sendable () -> Bool)?
        if let shareKey {
            shortcut = { [self] in self.answerFromCache(request, key: shareKey, original: original) }
        }
        return ScheduledJob(request: request, input: input, prepare: prepare, enqueuedAt: Date(), shareKey: shareKey, shortcut: shortcut) { [self] outcome in
            let plan = planned.plan
            // Stored under the version the answer was grounded in.
            let storeKey = plan.flatMap { $0.needsModel ? self.cacheKey(request, knowledgeVersion: $0.retrieval?.version) : nil }
            publishing.begin()
            Task {
                await self.complete(request, outcome, plan: plan, original: original, cacheKey: storeKey)
                // Its copies queued have its answer now, or run themselves.
                if let shareKey { self.scheduler.release(shareKey) }
                self.publishing.end()
            }
        }
    }

    /// Plans a queued request as it is about to start (on the scheduler's thread): the model's
    /// input, or nil when it was decided otherwise — too long with its passages, nothing to ask
    /// the model, or a knowledge base that cannot be read now (asked again with back-off, off
    /// this thread, then queued again).
    private func prepare(_ request: InferenceRequest, original: DeadLetterCopy, planned: PlannedAnswer) -> ScheduledJob.Input? {
        do {
            return settle(request, plan: try answers.plan(request), original: original, planned: planned)
        } catch {
            publishing.begin()
            Task {
                await self.planWithRetries(request, original: original)
                self.publishing.end()
            }
            return nil
        }
    }

    /// What a planned request needs: the model's input, or nil when it was answered (or
    /// rejected) without the model.
    private func settle(_ request: InferenceRequest, plan: AnswerPlan, original: DeadLetterCopy,
                        planned: PlannedAnswer) -> ScheduledJob.Input? {
        let tokens = plan.promptTokens
        if tokens.count > configuration.worker.maxPromptTokens {
            rejectInBackground(original, RequestRejection(
                code: "prompt_too_long", message: "the prompt has \(tokens.count) tokens with its passages; the limit is \(configuration.worker.maxPromptTokens)",
                requestID: request.requestID, replyTopic: request.replyTopic, replyPartition: request.replyPartition,
                correlationID: request.correlationID, trace: request.trace))
            return nil
        }
        guard plan.needsModel else {
            // Nothing retrieved: decided at once, without the model (expired if its deadline passed).
            let outcome: ScheduledJob.Outcome = request.hasExpired() ? .expired : .answeredWithoutModel(startedAt: Date())
            publishing.begin()
            Task {
                await self.complete(request, outcome, plan: plan, original: original)
                self.publishing.end()
            }
            return nil
        }
        planned.plan = plan
        return ScheduledJob.Input(plan)
    }

    /// The knowledge base could not be read when the request's turn came: plan it with
    /// back-off (``plan(_:)``), then queue it again, planned, at the head.
    private func planWithRetries(_ request: InferenceRequest, original: DeadLetterCopy) async {
        guard let plan = await plan(request) else {
            state.abandon([request.source])  // shutting down: the next owner answers
            return
        }
        let planned = PlannedAnswer()
        guard let input = settle(request, plan: plan, original: original, planned: planned) else { return }
        let job = modelJob(request, original: original, shareKey: nil, planned: planned, input: input, prepare: nil)
        state.abandon(scheduler.requeue([job]).map(\.request.source))
    }

    /// The grounded prompt for `request`. While the knowledge base cannot be read (e.g. a
    /// disk fault), asks again with back-off a few times, then escalates the request
    /// (`knowledge_unavailable`) rather than holding every partition. nil when shutdown began.
    private func plan(_ request: InferenceRequest) async -> AnswerPlan? {
        var backoff = Backoff(shutdown)
        while true {
            do {
                return try answers.plan(request)
            } catch {
                logger.error("knowledge base unreadable", metadata: ["error": "\(error.message)", "request_id": "\(request.requestID)", "trace_id": "\(request.trace.traceID)", "attempt": "\(backoff.attempts + 1)"])
                if backoff.attempts >= 4 { return answers.unavailablePlan() }
                guard await backoff.wait() else { return nil }
            }
        }
    }

    /// What the cluster says of a reply topic, asking again with back-off while it cannot say
    /// (`.unknown` only when shutdown began meanwhile). While the broker does not answer at all,
    /// nothing can be answered anyway and the loop waits; a topic the broker lists without usable
    /// metadata for ~30 s is unusable for this record.
    private func replyTopicPartitions(_ topic: String) async -> TopicDirectory.Answer {
        var backoff = Backoff(shutdown)
        while true {
            let answer = await topics.lookup(topic)
            guard case .unknown = answer else { return answer }
            if backoff.attempts >= 10, await topics.isListed(topic) {
                await topics.markUnusable(topic, "its metadata stayed unavailable")
                return .unusable("its metadata stayed unavailable")
            }
            logger.warning("cluster metadata unavailable; asking again", metadata: ["topic": "\(topic)"])
            guard await backoff.wait() else { return .unknown }
        }
    }

    /// The knowledge version answers are grounded in now: nil without a knowledge base;
    /// `.unreadable` when it cannot be read (no cache lookup then).
    private enum KnowledgeVersion { case none, version(String), unreadable }

    private func currentKnowledgeVersion() -> KnowledgeVersion {
        guard let knowledge = answers.knowledge else { return .none }
        guard let version = try? knowledge.version() else { return .unreadable }
        return .version(version)
    }

    private func cacheKey(_ request: InferenceRequest, knowledgeVersion: KnowledgeVersion) -> String? {
        switch knowledgeVersion {
        case .none: cacheKey(request, knowledgeVersion: nil as String?)
        case .version(let version): cacheKey(request, knowledgeVersion: version)
        case .unreadable: nil
        }
    }

    private func cacheKey(_ request: InferenceRequest, knowledgeVersion: String?) -> String? {
        guard answerCache != nil else { return nil }
        return AnswerCache.key(request, context: .init(
            modelSHA256: backend.identity.sha256, templateVersion: templateVersion, answerMode: answers.settings.answerMode,
            knowledgeVersion: knowledgeVersion))
    }

    /// The cached answer of `key`; a cache that cannot be read is a miss (logged), never a stall.
    /// `countingMiss`: false for the second look of a request already counted as a miss.
    private func cachedAnswer(_ key: String?, countingMiss: Bool = true) -> AnswerCache.Entry? {
        guard let key, let cache = answerCache else {
            if answerCache != nil { metrics.answerCache("bypass").increment() }
            return nil
        }
        do {
            let hit = try cache.lookup(key)
            if hit != nil || countingMiss { metrics.answerCache(hit == nil ? "miss" : "hit").increment() }
            return hit
        } catch {
            metrics.answerCache("error").increment()
            logger.warning("answer cache unreadable; asking the model", metadata: ["error": "\(error)"])
            return nil
        }
    }

    /// Answers a queued request from the cache when an identical question's answer was stored
    /// while it waited; false when there is none, or its deadline passed (the scheduler then
    /// answers it `expired`).
    private func answerFromCache(_ request: InferenceRequest, key: String, original: DeadLetterCopy) -> Bool {
        guard !request.hasExpired(), let hit = cachedAnswer(key, countingMiss: false) else { return false }
        publishing.begin()
        Task {
            await self.completeFromCache(request, hit, original: original)
            self.publishing.end()
        }
        return true
    }

    private func finish(_ partition: KafkaTopicPartition, _ offset: Int64) {
        state.finish(partition, offset: offset)
        metrics.inFlight.set(Double(state.inFlight))
        metrics.queueDepth.set(Double(scheduler.depth))
    }

    /// `plan` is nil only for a request that expired before it was planned.
    private func complete(_ request: InferenceRequest, _ outcome: ScheduledJob.Outcome, plan: AnswerPlan?, original: DeadLetterCopy,
                          cacheKey: String? = nil) async {
        var decision: AnswerDecision?
        var usage: (prompt: Int, completion: Int)?
        switch outcome {
        case .completed(let completion, _):
            decision = plan.map { answers.decide(request, plan: $0, completion: completion) }
            usage = (completion.promptTokens, completion.completionTokens)
        case .answeredWithoutModel:
            decision = plan.map { answers.decide(request, plan: $0, completion: nil) }
        case .expired, .failed:
            break
        }
        let (reply, record) = records.answered(request, outcome, decision: decision)
        if case .completed(let completion, let startedAt) = outcome {
            metrics.queueTime.record(Duration.seconds(startedAt.timeIntervalSince(request.receivedAt)))
            if let first = completion.timeToFirstToken { metrics.timeToFirstToken.record(Duration.seconds(first)) }
            metrics.tokens.increment(by: Int64(completion.completionTokens))
        }
        let answer = decision?.text
        guard await publishAndAudit(request, reply: reply, record: record, answer: answer, original: original) else { return }
        // An automated answer the model produced is reusable by the same question later.
        if let cacheKey, let cache = answerCache, let decision, let usage, record.status == .ok, !decision.escalate, record.errorCode == nil {
            let entry = AnswerCache.Entry(
                requestID: request.requestID, text: decision.text, confidence: decision.confidence, parts: decision.parts,
                knowledgeVersion: decision.knowledgeVersion, passageIDs: decision.passageIDs,
                promptTokens: usage.prompt, completionTokens: usage.completion)
            do {
                try cache.store(entry, for: cacheKey)
            } catch {
                logger.warning("answer cache write failed (the answer went out; it is not reused)", metadata: ["error": "\(error)"])
                return
            }
            // Identical questions queued behind this one take its answer now, not when their
            // turn comes (in a peak they would expire first); those that cannot go back.
            let unanswered = scheduler.takeQueued(sharing: cacheKey).filter { !($0.shortcut?() ?? false) }
            if !unanswered.isEmpty { state.abandon(scheduler.requeue(unanswered).map(\.request.source)) }
        }
    }

    /// A request whose answer is in the answer cache: no inference; its own reply and audit
    /// row (naming the request whose answer it reused), its own escalation decision — the
    /// rules and the threshold as configured now apply to its prompt.
    private func completeFromCache(_ request: InferenceRequest, _ hit: AnswerCache.Entry, original: DeadLetterCopy) async {
        let decision = AnswerDecision(
            text: hit.text, confidence: hit.confidence,
            reasons: policy.ruleReasons(prompt: request.prompt) + (hit.confidence < policy.confidenceThreshold ? ["low_confidence"] : []),
            parts: hit.parts, knowledgeVersion: hit.knowledgeVersion, passageIDs: hit.passageIDs)
        let (reply, record) = records.fromCache(request, hit, decision: decision)
        _ = await publishAndAudit(request, reply: reply, record: record, answer: decision.text, original: original)
    }

    /// The tail every answered request shares: reply (and escalation), or — when the reply
    /// cannot be published — a dead-letter copy and an error reply; then the audit row, then
    /// the offset may be committed. False when shutdown (or a fatal error) came first: the
    /// request was handed back, uncommitted.
    private func publishAndAudit(_ request: InferenceRequest, reply: InferenceReply, record: AuditRecord, answer: String?,
                                 original: DeadLetterCopy) async -> Bool {
        var record = record
        let delivered = await output.deliver(reply, to: request.replyTopic, partition: request.replyPartition, correlationID: request.correlationID, key: request.conversationID, trace: request.trace)
        switch delivered {
        case .delivered:
            if reply.escalate {
                switch await output.deliverEscalation(request, reply: reply, answer: answer ?? "") {
                case .delivered: break
                case .failed(let error):
                    // The customer's reply says a human will follow up; the audit row says the hand-over failed.
                    record.errorCode = "escalation_undeliverable"
                    record.errorMessage = "the escalation could not be published: \(error)"
                case .stopped:
                    // No audit row without the hand-over: the next owner answers (and escalates) again.
                    state.abandon([request.source])
                    return false
                }
            }
        case .failed(let error):
            // Permanent for this request: it ends as an error, with a DLQ copy and an error
            // reply on the default topic.
            record.status = .error
            record.errorCode = "reply_undeliverable"
            record.errorMessage = "the reply to \(request.replyTopic) could not be published: \(error)"
            metrics.replyFailures.increment()
            switch await output.deadLetter(original, code: "reply_undeliverable", message: record.errorMessage ?? "", trace: request.trace) {
            case .delivered: break
            case .failed(let error): record.errorMessage! += "; dead-letter copy failed: \(error)"
            case .stopped:
                state.abandon([request.source])
                return false
            }
            // The error reply is small: it fits where an oversized answer did not, and goes to the
            // default topic when the requested one is what failed.
            var failure = InferenceReply(requestID: request.requestID, status: .error, escalate: false, worker: workerID,
                                         errorCode: "reply_undeliverable", errorMessage: record.errorMessage)
            failure.metadata = request.metadata
            switch await output.deliver(failure, to: limits.defaultTopic, partition: nil, correlationID: request.correlationID, key: request.conversationID, trace: request.trace) {
            case .delivered: break
            case .failed(let error): record.errorMessage! += "; the error reply failed too: \(error)"
            case .stopped:
                state.abandon([request.source])
                return false
            }
        case .stopped:
            // Shutting down before the reply was delivered: nothing is committed; the next owner answers.
            state.abandon([request.source])
            return false
        }
        let entry = AuditEntry(record: record, prompt: request.prompt, response: answer, customerRef: request.customerRef)
        guard let result = await auditWriter.write(entry) else {
            state.abandon([request.source])
            return false
        }
        if case .duplicate(let stored) = result, !Self.isSource(stored, of: request) {
            // Two records with this request id were answered at once (neither was audited when
            // the other arrived): this one's row goes under its own position.
            var own = entry
            own.record = records.answeredTwice(entry.record, of: request, stored: stored)
            guard await auditWriter.write(own) != nil else {
                state.abandon([request.source])
                return false
            }
        }
        metrics.requests(record.status == .ok ? reply.status.rawValue : record.status.rawValue).increment()
        if let reason = reply.escalationReason { metrics.escalations(reason).increment() }
        metrics.endToEnd.record(Duration.seconds(Date().timeIntervalSince(request.receivedAt)))
        // One line per request: at info when it needs a look (escalated, failed, expired),
        // at debug for an automated answer (a peak would otherwise flood the log).
        let needsLook = record.status != .ok || record.route == .escalated || record.errorCode != nil
        logger.log(level: needsLook ? .info : .debug, "request finished", metadata: [
            "request_id": "\(request.requestID)", "trace_id": "\(request.trace.traceID)", "status": "\(record.status.rawValue)",
            "route": "\(record.route.rawValue)", "reason": "\(record.escalationReason ?? record.errorCode ?? "")",
            "confidence": "\(record.confidence.map { String(format: "%.3f", $0) } ?? "")",
            "record": "\(request.source.topic):\(request.source.partition):\(request.source.offset)",
        ])
        finish(request.source.topicPartition, request.source.offset)
        return true
    }

    // MARK: - Rejections and duplicates

    /// Ends a record that cannot be answered without holding up the consume loop: error
    /// reply, dead-letter copy and audit row are written by a task of their own.
    private func rejectInBackground(_ message: KafkaConsumerMessage, _ rejection: RequestRejection) {
        rejectInBackground(DeadLetterCopy(message, maxValueBytes: deadLetterValueBytes), rejection)
    }

    /// The same for a held request, from the bounded copy it keeps of its record.
    private func rejectInBackground(_ record: DeadLetterCopy, _ rejection: RequestRejection) {
        logger.warning("request rejected", metadata: [
            "code": "\(rejection.code)", "topic": "\(record.topic)", "offset": "\(record.offset)", "trace_id": "\(rejection.trace.traceID)",
        ])
        publishing.begin()
        Task {
            await self.reject(record, rejection)
            self.publishing.end()
        }
    }

    private func reject(_ copy: DeadLetterCopy, _ rejection: RequestRejection) async {
        let position = KafkaTopicPartitionOffset(topic: copy.topic, partition: copy.partition, offset: copy.offset)
        logger.info("request rejected", metadata: [
            "code": "\(rejection.code)", "request_id": "\(rejection.requestID ?? "")", "trace_id": "\(rejection.trace.traceID)",
            "record": "\(copy.topic):\(copy.partition):\(copy.offset)",
        ])
        var notes: [String] = []
        var repliedTo: (topic: String, partition: Int32?)?
        if let replyTopic = rejection.replyTopic, destinations.refusal(replyTopic) == nil {
            let reply = records.rejectionReply(rejection)
            var partition = rejection.replyPartition
            if let requested = partition, case .exists(let count) = await topics.lookup(replyTopic), !(0..<Int32(clamping: count)).contains(requested) {
                partition = nil
            }
            switch await output.deliver(reply, to: replyTopic, partition: partition, correlationID: rejection.correlationID, key: nil, trace: rejection.trace) {
            case .delivered: repliedTo = (replyTopic, partition)
            case .failed(let error): notes.append("error reply to \(replyTopic) failed: \(error)")
            case .stopped:
                state.abandon([position])
                return
            }
        }
        switch await output.deadLetter(copy, code: rejection.code, message: rejection.message, trace: rejection.trace) {
        case .delivered: break
        case .failed(let error): notes.append("dead-letter copy failed: \(error)")
        case .stopped:
            state.abandon([position])
            return
        }
        let record = records.rejected(rejection, at: (copy.topic, copy.partition, copy.offset), notes: notes, repliedTo: repliedTo)
        let prompt = String(decoding: copy.value.prefix(4096), as: UTF8.self)
        guard await auditWriter.write(AuditEntry(record: record, prompt: prompt, response: nil, customerRef: nil)) != nil else {
            state.abandon([position])
            return
        }
        metrics.requests("rejected").increment()
        finish(position.topicPartition, copy.offset)
    }

    /// A request id already answered from another record (a client's retry under a new
    /// record): the reply says so and names the original; audited under this record's position.
    private func answerDuplicate(_ message: KafkaConsumerMessage, _ request: InferenceRequest, original: AuditRecord) {
        logger.info("duplicate request id: answered with the first record's outcome", metadata: [
            "request_id": "\(request.requestID)", "trace_id": "\(request.trace.traceID)", "original": "\(original.topic ?? "?"):\(original.partition ?? -1):\(original.offset ?? -1)",
        ])
        publishing.begin()
        Task {
            defer { self.publishing.end() }
            let (reply, duplicateRecord) = records.duplicate(request, original: original)
            var record = duplicateRecord
            let delivered = await output.deliver(reply, to: request.replyTopic, partition: request.replyPartition, correlationID: request.correlationID, key: request.conversationID, trace: request.trace)
            if case .stopped = delivered {
                state.abandon([request.source])
                return
            }
            if case .failed(let error) = delivered { record.errorMessage! += "; the reply could not be published: \(error)" }
            guard await auditWriter.write(AuditEntry(record: record, prompt: request.prompt, response: nil, customerRef: request.customerRef)) != nil else {
                state.abandon([request.source])
                return
            }
            metrics.requests("duplicate").increment()
            finish(message.topicPartition, message.offset)
        }
    }

    /// Whether an audit row was written for `request`'s own record.
    private static func isSource(_ record: AuditRecord, of request: InferenceRequest) -> Bool {
        record.topic == request.source.topic && record.partition == Int64(request.source.partition) && record.offset == request.source.offset
    }
}

/// The plan of a queued request, made when its turn comes and read when it ends.
final class PlannedAnswer: Sendable {
    private let value = Mutex<AnswerPlan?>(nil)

    var plan: AnswerPlan? {
        get { value.withLock { $0 } }
        set { value.withLock { $0 = newValue } }
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

/// Lets the revocation callback, created before the consumer exists, reach it. Set once,
/// before the consumer subscribes; read only afterwards.
final class ConsumerReference: @unchecked Sendable {
    var consumer: KafkaConsumer?
}

/// The same for the scheduler.
final class SchedulerReference: @unchecked Sendable {
    var scheduler: ContinuousBatchScheduler?
}
