import Foundation
import Inference
import KafkaClient
import Synchronization

/// One queued request and what to do when it is answered.
public struct ScheduledJob: Sendable {
    public enum Outcome: Sendable {
        case completed(Completion, startedAt: Date)
        /// The deadline passed before inference started; the model never saw it.
        case expired
        case failed(InferenceError, startedAt: Date?)
        /// There was nothing to ask the model (no passage retrieved); never produced by the
        /// scheduler — the worker decides such requests at once.
        case answeredWithoutModel(startedAt: Date)
    }

    /// What the model is asked.
    public struct Input: Sendable {
        public var promptTokens: [Int32]
        /// Extractive answering: the texts the answer may be (see ``GenerationRequest/choices``).
        public var choices: [GenerationRequest.Choice]
        /// Replaces the scheduler's stop strings for this job.
        public var stopStrings: [String]?

        public init(promptTokens: [Int32], choices: [GenerationRequest.Choice] = [], stopStrings: [String]? = nil) {
            self.promptTokens = promptTokens
            self.choices = choices
            self.stopStrings = stopStrings
        }

        public init(_ plan: AnswerPlan) {
            self.init(promptTokens: plan.promptTokens, choices: plan.choices, stopStrings: plan.stopStrings)
        }
    }

    public let request: InferenceRequest
    /// Known when queued, or computed by `prepare` when the job is about to start.
    public let input: Input
    public var promptTokens: [Int32] { input.promptTokens }
    public var choices: [GenerationRequest.Choice] { input.choices }
    public var stopStrings: [String]? { input.stopStrings }
    /// Builds the input just before the job starts (after `shortcut`), in place of `input`, so
    /// a request that expires or is answered from the cache while queued never costs its
    /// retrieval and tokenization. nil when it was decided without the model instead (it then
    /// never starts and `onFinish` is not called: whoever decided it finishes it).
    public let prepare: (@Sendable () -> Input?)?
    public let enqueuedAt: Date
    /// Jobs with the same key have the same answer (the answer cache's key): once one is
    /// answered, the others queued may be taken out (``ContinuousBatchScheduler/takeQueued(sharing:)``).
    public let shareKey: String?
    /// Tried just before the job would start: true when it was answered without the model
    /// meanwhile (an identical question's answer is in the cache); the job then never starts
    /// and `onFinish` is not called — whoever answered it finishes it.
    public let shortcut: (@Sendable () -> Bool)?
    public let onFinish: @Sendable (Outcome) -> Void

    public init(request: InferenceRequest, promptTokens: [Int32], choices: [GenerationRequest.Choice] = [], stopStrings: [String]? = nil,
                enqueuedAt: Date, shareKey: String? = nil, shortcut: (@Sendable () -> Bool)? = nil,
                onFinish: @escaping @Sendable (Outcome) -> Void) {
        self.init(request: request, input: Input(promptTokens: promptTokens, choices: choices, stopStrings: stopStrings), prepare: nil,
                  enqueuedAt: enqueuedAt, shareKey: shareKey, shortcut: shortcut, onFinish: onFinish)
    }

    public init(request: InferenceRequest, input: Input, prepare: (@Sendable () -> Input?)?, enqueuedAt: Date, shareKey: String?,
                shortcut: (@Sendable () -> Bool)?, onFinish: @escaping @Sendable (Outcome) -> Void) {
        self.request = request
        self.input = input
        self.prepare = prepare
        self.enqueuedAt = enqueuedAt
        self.shareKey = shareKey
        self.shortcut = shortcut
        self.onFinish = onFinish
    }

    /// The job for a planned answer.
    public init(request: InferenceRequest, plan: AnswerPlan, enqueuedAt: Date, onFinish: @escaping @Sendable (Outcome) -> Void) {
        self.init(request: request, input: Input(plan), prepare: nil, enqueuedAt: enqueuedAt, shareKey: nil, shortcut: nil, onFinish: onFinish)
    }
}

/// Continuous batching on a dedicated thread: up to `maxBatchSize` sequences decode together;
/// queued requests join at the next step (interactive before batch, batch work promoted once
/// it has waited `aging`), finished ones leave. Expired requests are answered without
/// inference, also when they expire while queued. The queue is bounded.
///
/// Identical questions (one ``ScheduledJob/shareKey``) are asked once: while one runs, and
/// after it until its finisher calls ``release(_:)`` (or ``takeQueued(sharing:)`` takes them),
/// its queued copies wait for its answer rather than take a place in the batch. Every other
/// place goes to the question with the most copies queued, so one answer serves the most
/// requests in a peak; the other places keep the order above, so a question asked once still
/// gets at least half of them. Copies of a question whose answer was not shared (escalated,
/// not cached) are released and run as any other job; a hold after the job finished never
/// outlasts `shareHold`.
public final class ContinuousBatchScheduler: @unchecked Sendable {  // state behind `condition`
    public struct Settings: Sendable {
        public var maxBatchSize: Int
        public var maxWait: TimeInterval
        public var queueCapacity: Int
        public var aging: TimeInterval
        public var stopStrings: [String]
        /// The longest a finished job holds its queued copies back without ``release(_:)``.
        public var shareHold: TimeInterval

        /// The worker's settings (`worker.*`); `queueCapacity` overrides `worker.queue_capacity`.
        public init(_ worker: SluiceConfiguration.WorkerSettings, queueCapacity: Int? = nil) {
            self.init(maxBatchSize: worker.maxBatchSize, maxWait: Double(worker.maxWaitMs) / 1000,
                      queueCapacity: queueCapacity ?? worker.queueCapacity, aging: Double(worker.agingMs) / 1000, stopStrings: worker.stopStrings)
        }

        public init(maxBatchSize: Int, maxWait: TimeInterval, queueCapacity: Int, aging: TimeInterval, stopStrings: [String] = [],
                    shareHold: TimeInterval = 10) {
            self.maxBatchSize = maxBatchSize
            self.maxWait = maxWait
            self.queueCapacity = queueCapacity
            self.aging = aging
            self.stopStrings = stopStrings
            self.shareHold = shareHold
        }
    }

    private let backend: any GenerationBackend
    private let settings: Settings
    private let condition = NSCondition()
    private var queue: [ScheduledJob] = []
    /// Queued jobs per share key.
    private var queuedPerKey: [String: Int] = [:]
    /// Keys with two or more jobs queued (the candidates for a shared place).
    private var sharedKeys = 0
    /// Keys whose job finished, until its finisher releases them (copies wait meanwhile), or
    /// the time given passes.
    private var answering: [String: Date] = [:]
    /// Keys released with copies still queued: they no longer wait (the answer was not shared),
    /// until none is queued.
    private var settledKeys: Set<String> = []
    /// The next place goes to the most shared question.
    private var sharedTurn = true
    /// Partitions whose queued jobs ``dropQueued(from:)`` handed over, until assigned again.
    private var handedOver: Set<KafkaTopicPartition> = []
    private var active: [Int: (job: ScheduledJob, startedAt: Date)] = [:]
    private var nextID = 0
    private var stopping = false
    private var stopDeadline = Date.distantFuture
    /// When the loop last finished a step (or found nothing to do); for the stall check.
    private var lastProgress = ContinuousClock.now
    /// Running jobs cancelled because the stop deadline passed.
    private var cancelledAtStop: [KafkaTopicPartitionOffset] = []
    private var thread: Thread?
    private let finished = DispatchSemaphore(value: 0)
    /// Told the batch size and duration of every decoding step, and the backend's prompt
    /// positions so far (metrics).
    public var onStep: (@Sendable (Int, Duration, PrefillCounts) -> Void)?

    public init(backend: any GenerationBackend, settings: Settings) {
        self.backend = backend
        self.settings = settings
    }

    /// How long the scheduler has had work without finishing a step; nil when it has none.
    public var stalledFor: Duration? {
        condition.lock()
        defer { condition.unlock() }
        return queue.isEmpty && active.isEmpty ? nil : ContinuousClock.now - lastProgress
    }

    /// Queued plus running requests.
    public var depth: Int {
        condition.lock()
        defer { condition.unlock() }
        return queue.count + active.count
    }

    /// Adds a job; false when the queue is full (the caller pauses consumption first, so
    /// this is a last line of defence).
    public func enqueue(_ job: ScheduledJob) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard queue.count < settings.queueCapacity, !stopping else { return false }
        queue.append(job)
        counted(job, +1)
        condition.signal()
        return true
    }

    /// Removes the queued (not yet running) jobs whose ``ScheduledJob/shareKey`` is `key`, in
    /// queue order: an identical question was just answered, so they need not wait for the model.
    /// The caller answers them, or puts back those it cannot (``requeue(_:)``).
    public func takeQueued(sharing key: String) -> [ScheduledJob] {
        condition.lock()
        defer { condition.unlock() }
        return removeQueued { $0.shareKey == key }
    }

    /// The job of `key` that finished was answered: copies still queued no longer wait for it
    /// (its answer was not shared, or they were put back). Its finisher calls this once it has
    /// stored the answer and taken the copies, or decided not to.
    public func release(_ key: String) {
        condition.lock()
        defer { condition.unlock() }
        answering[key] = nil
        if queuedPerKey[key] != nil { settledKeys.insert(key) }
        condition.signal()
    }

    /// Puts back jobs taken by ``takeQueued(sharing:)`` at the head of the queue, whatever its
    /// capacity (they were admitted once and are counted as held). Returns those it refused —
    /// all once the scheduler is stopping, and those of partitions handed over by
    /// ``dropQueued(from:)`` (their next owner answers them): the caller hands them back.
    public func requeue(_ jobs: [ScheduledJob]) -> [ScheduledJob] {
        condition.lock()
        defer { condition.unlock() }
        guard !stopping else { return jobs }
        let kept = jobs.filter { !handedOver.contains($0.request.source.topicPartition) }
        queue.insert(contentsOf: kept, at: 0)
        for job in kept { counted(job, +1) }
        condition.signal()
        return jobs.filter { handedOver.contains($0.request.source.topicPartition) }
    }

    /// Partitions assigned (again): ``requeue(_:)`` takes their jobs once more.
    public func reclaim(_ partitions: [KafkaTopicPartition]) {
        condition.lock()
        defer { condition.unlock() }
        handedOver.subtract(partitions)
    }

    /// Removes queued (not yet running) jobs of `partitions` and returns their records'
    /// positions; they were never started, so their next owner answers them.
    public func dropQueued(from partitions: Set<KafkaTopicPartition>) -> [KafkaTopicPartitionOffset] {
        condition.lock()
        defer { condition.unlock() }
        let dropped = removeQueued { partitions.contains($0.request.source.topicPartition) }.map(\.request.source)
        // A job out of the queue just now (taken to share an answer, or being planned again)
        // must not come back for these partitions.
        handedOver.formUnion(partitions)
        return dropped
    }

    public func start() {
        let thread = Thread { [self] in run() }
        thread.name = "sluice.scheduler"
        thread.start()
        self.thread = thread
    }

    /// Stops taking new work and returns the records it hands back: queued jobs at once (never
    /// started), and sequences still running at `deadline`, which are cancelled then. Their
    /// `onFinish` is never called; the caller abandons them (not committed: the partition's next
    /// owner answers them). Returns when the loop has exited — at most one step past `deadline`.
    @discardableResult
    public func stop(until deadline: Date = .distantFuture) -> [KafkaTopicPartitionOffset] {
        condition.lock()
        stopping = true
        stopDeadline = deadline
        let queued = removeQueued { _ in true }.map(\.request.source)
        condition.signal()
        condition.unlock()
        if thread != nil { finished.wait() }
        condition.lock()
        defer { condition.unlock() }
        return queued + cancelledAtStop
    }

    private func run() {
        defer { finished.signal() }
        while true {
            condition.lock()
            if active.isEmpty && queue.isEmpty && !stopping {
                condition.wait()
                lastProgress = .now  // new work arrived: the clock starts now
            }
            // When idle, give a burst a moment to arrive so it starts as one batch.
            if active.isEmpty, !queue.isEmpty, queue.count < settings.maxBatchSize, settings.maxWait > 0, !stopping {
                _ = condition.wait(until: Date().addingTimeInterval(settings.maxWait))
            }
            if stopping && active.isEmpty {
                condition.unlock()
                return
            }
            if stopping && Date() >= stopDeadline {
                // Out of time: running sequences are cancelled and handed back, never answered.
                let running = active
                active = [:]
                cancelledAtStop = running.values.map(\.job.request.source)
                condition.unlock()
                for id in running.keys { backend.cancel(id) }
                return
            }
            let expired = takeExpired(now: Date())
            let admitted = stopping ? [] : admit(now: Date())
            condition.unlock()

            for job in expired { job.onFinish(.expired) }
            for (id, job) in admitted {
                // Answered meanwhile, or decided without the model when prepared: its finisher owns it now.
                var input: ScheduledJob.Input?
                if let shortcut = job.shortcut, shortcut() {
                    input = nil
                } else if let prepare = job.prepare {
                    input = prepare()
                } else {
                    input = job.input
                }
                guard let input else {
                    condition.lock()
                    active[id] = nil
                    condition.unlock()
                    continue
                }
                do {
                    try backend.submit(id, GenerationRequest(
                        promptTokens: input.promptTokens, maxTokens: job.request.maxTokens,
                        sampling: SamplingParameters(temperature: job.request.temperature, topK: 40, topP: job.request.topP, seed: job.request.seed),
                        stopStrings: input.stopStrings ?? settings.stopStrings, choices: input.choices))
                } catch {
                    condition.lock()
                    active[id] = nil
                    condition.unlock()
                    job.onFinish(.failed(error, startedAt: Date()))
                }
            }
            guard backend.activeCount > 0 else {
                // Only copies of answers being shared are queued: wait for a release, new work or a
                // deadline. Waiting (at most shareHold) is not a stall.
                condition.lock()
                if admitted.isEmpty, expired.isEmpty, active.isEmpty, !queue.isEmpty, !stopping {
                    _ = condition.wait(until: Date().addingTimeInterval(0.05))
                    lastProgress = .now
                }
                condition.unlock()
                continue
            }
            do {
                let batch = backend.activeCount
                let stepStart = ContinuousClock.now
                let events = try backend.step()
                onStep?(batch, ContinuousClock.now - stepStart, backend.prefillCounts)
                condition.lock()
                lastProgress = .now
                condition.unlock()
                for event in events {
                    guard case .finished(let id, let completion) = event else { continue }
                    condition.lock()
                    let entry = active.removeValue(forKey: id)
                    if let key = entry?.job.shareKey { answering[key] = Date().addingTimeInterval(settings.shareHold) }
                    condition.unlock()
                    if let entry { entry.job.onFinish(.completed(completion, startedAt: entry.startedAt)) }
                }
            } catch {
                // A failed step fails every running sequence; the worker answers them with errors.
                condition.lock()
                let running = active
                active = [:]
                condition.unlock()
                for (id, entry) in running {
                    backend.cancel(id)
                    entry.job.onFinish(.failed(error, startedAt: entry.startedAt))
                }
            }
        }
    }

    /// Queued jobs whose deadline has passed (called with the lock held).
    private func takeExpired(now: Date) -> [ScheduledJob] {
        removeQueued { $0.request.hasExpired(at: now) }
    }

    /// Removes and returns the queued jobs that match, in queue order (lock held).
    private func removeQueued(where matches: (ScheduledJob) -> Bool) -> [ScheduledJob] {
        let removed = queue.filter(matches)
        guard !removed.isEmpty else { return [] }
        queue.removeAll(where: matches)
        for job in removed { counted(job, -1) }
        return removed
    }

    /// Keeps the per-key counts as `job` enters (+1) or leaves (−1) the queue (lock held).
    private func counted(_ job: ScheduledJob, _ change: Int) {
        guard let key = job.shareKey else { return }
        let before = queuedPerKey[key, default: 0], after = before + change
        if before < 2, after >= 2 { sharedKeys += 1 }
        if before >= 2, after < 2 { sharedKeys -= 1 }
        if after > 0 {
            queuedPerKey[key] = after
        } else {
            queuedPerKey[key] = nil
            settledKeys.remove(key)
        }
    }

    /// Moves jobs from the queue into the batch (called with the lock held).
    private func admit(now: Date) -> [(Int, ScheduledJob)] {
        var admitted: [(Int, ScheduledJob)] = []
        for (key, until) in answering where until <= now {
            answering[key] = nil
            if queuedPerKey[key] != nil { settledKeys.insert(key) }
        }
        var running = Set(active.values.compactMap(\.job.shareKey)).union(answering.keys).subtracting(settledKeys)
        while active.count < settings.maxBatchSize, let index = nextIndex(now: now, waiting: running) {
            let job = queue.remove(at: index)
            counted(job, -1)
            if let key = job.shareKey, !settledKeys.contains(key) { running.insert(key) }
            nextID += 1
            active[nextID] = (job, now)
            admitted.append((nextID, job))
        }
        return admitted
    }

    /// Every other place: the first queued copy of the question with the most copies queued
    /// (two at least; ties to the smaller key). Otherwise interactive first (oldest first),
    /// unless a batch job has waited past `aging`. Copies of a question running now (`waiting`)
    /// are passed over: its answer is theirs. nil when nothing queued may start.
    private func nextIndex(now: Date, waiting: Set<String>) -> Int? {
        guard !queue.isEmpty else { return nil }
        sharedTurn.toggle()
        if !sharedTurn, sharedKeys > 0, let key = mostShared(excluding: waiting),
           let index = queue.firstIndex(where: { $0.shareKey == key }) {
            return index
        }
        func eligible(_ job: ScheduledJob) -> Bool { job.shareKey.map { !waiting.contains($0) } ?? true }
        let promoted = queue.firstIndex { $0.request.priority == .batch && now.timeIntervalSince($0.enqueuedAt) >= settings.aging && eligible($0) }
        let interactive = queue.firstIndex { $0.request.priority == .interactive && eligible($0) }
        switch (promoted, interactive) {
        case (let p?, let i?): return queue[p].enqueuedAt < queue[i].enqueuedAt ? p : i
        case (let p?, nil): return p
        case (nil, let i?): return i
        default: return queue.firstIndex(where: eligible)
        }
    }

    /// The key with the most jobs queued (two at least), not settled nor in `excluded`.
    private func mostShared(excluding excluded: Set<String>) -> String? {
        var best: (key: String, count: Int)?
        for (key, count) in queuedPerKey where count >= 2 && !excluded.contains(key) && !settledKeys.contains(key) {
            if let current = best, current.count > count || (current.count == count && current.key < key) { continue }
            best = (key, count)
        }
        return best?.key
    }
}
