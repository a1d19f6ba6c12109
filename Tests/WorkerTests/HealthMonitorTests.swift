import Foundation
import Inference
import Synchronization
import Testing
@testable import Worker

@Suite("Health conditions (unit)")
struct HealthMonitorTests {
    @Test("each condition fails health after its limit, and clears when it ends")
    func conditions() {
        let fatal = FatalLatch()
        let stall = StallClock()
        let monitor = HealthMonitor(fatal: fatal, auditFailureLimit: .seconds(2), consumeStallLimit: .seconds(3), schedulerStallLimit: .seconds(4),
                                    schedulerStall: { stall.value })
        let now = ContinuousClock.now
        #expect(monitor.failing(now: now).isEmpty)

        monitor.auditWrite(succeeded: false)
        #expect(monitor.auditFailing, "unready from the first failed write")
        #expect(monitor.failing(now: now).isEmpty, "not yet unhealthy")
        #expect(monitor.failing(now: now + .seconds(3)).map(\.0) == [.auditFailing])
        monitor.auditWrite(succeeded: false)
        #expect(monitor.failing(now: now + .seconds(3)).map(\.0) == [.auditFailing], "a second failure keeps the first one's time")
        monitor.auditWrite(succeeded: true)
        #expect(!monitor.auditFailing && monitor.failing(now: now + .seconds(3)).isEmpty)

        monitor.beginHandling()
        #expect(monitor.failing(now: .now + .seconds(4)).map(\.0) == [.consumeLoopStalled])
        monitor.endHandling()
        #expect(monitor.failing(now: .now + .seconds(4)).isEmpty)

        stall.value = .seconds(5)
        #expect(monitor.failing().map(\.0) == [.schedulerStalled])
        stall.value = nil

        fatal.trip("producer: fenced")
        #expect(monitor.failing().map(\.0) == [.fatalClientError] && monitor.failing().first?.1 == "producer: fenced")
    }
}

final class StallClock: @unchecked Sendable {  // written by the test thread only, before reads
    private let lock = NSLock()
    private var stored: Duration?
    var value: Duration? {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}

/// A model whose step blocks until released: the scheduler makes no progress with work queued.
final class WedgedBackend: GenerationBackend, @unchecked Sendable {  // the semaphore is thread-safe
    let identity = ModelIdentity(name: "wedged", quantization: "none", sha256: "")
    let release = DispatchSemaphore(value: 0)
    private let lock = NSLock()
    private var pending: [Int] = []
    var activeCount: Int { lock.withLock { pending.count } }
    func tokenize(_ prompt: String) -> [Int32] { prompt.unicodeScalars.map { Int32(bitPattern: $0.value) } }
    func tokenizeContinuation(_ text: String) -> [Int32] { tokenize(text) }
    func submit(_ id: Int, _ request: GenerationRequest) throws(InferenceError) { lock.withLock { pending.append(id) } }
    func cancel(_ id: Int) { lock.withLock { pending.removeAll { $0 == id } } }
    func step() throws(InferenceError) -> [BatchGenerator.Event] {
        release.wait()
        release.signal()  // stays released
        let ids = lock.withLock { defer { pending = [] }; return pending }
        return ids.map {
            .finished($0, Completion(text: "late", tokens: [1], confidence: 1, minTokenProbability: 1, promptTokens: 1,
                                     finishReason: .endOfSequence, timeToFirstToken: 0))
        }
    }
}

@Suite("Health conditions: a stalled scheduler (the real scheduler and endpoint)")
struct SchedulerStallHealthTests {
    @Test("a scheduler that makes no progress with work queued fails /healthz (scheduler_stalled, with its metric); it recovers once the step ends")
    func stalledScheduler() async throws {
        let backend = WedgedBackend()
        let scheduler = ContinuousBatchScheduler(backend: backend, settings: .init(maxBatchSize: 4, maxWait: 0.01, queueCapacity: 8, aging: 60))
        let health = HealthMonitor(fatal: FatalLatch(), auditFailureLimit: .seconds(60), consumeStallLimit: .seconds(60), schedulerStallLimit: .milliseconds(300),
                                   schedulerStall: { scheduler.stalledFor })
        let metrics = WorkerMetrics(model: backend.identity, worker: "w", latencyObjective: .seconds(1))
        let port = try freeLocalPort()
        let endpoint = Task { try await HealthEndpoint(metrics: metrics, isReady: { true }, health: health, port: port).run() }
        defer { endpoint.cancel() }
        let url = "http://127.0.0.1:\(port)/healthz"
        try await withDeadlineThrowing(30, "the endpoint to answer healthy") {
            while try await WorkerEndpointTests.get(url).0 != 200 { try await Task.sleep(for: .milliseconds(50)) }
        }
        let finished = Atomic(false)
        let request = SchedulingTests.request("wedged")
        _ = scheduler.enqueue(ScheduledJob(request: request, promptTokens: backend.tokenize(request.prompt), enqueuedAt: Date()) { _ in
            finished.store(true, ordering: .relaxed)
        })
        scheduler.start()
        let body = try await withDeadlineThrowing(30, "/healthz to fail") {
            while true {
                let (code, body) = try await WorkerEndpointTests.get(url)
                if code == 503 { return body }
                try await Task.sleep(for: .milliseconds(50))  // probing, as an orchestrator does
            }
        }
        #expect(body.contains("scheduler_stalled"), "\(body)")
        let scraped = try await WorkerEndpointTests.get("http://127.0.0.1:\(port)/metrics").1
        #expect(scraped.contains(#"sluice_health_failing{condition="scheduler_stalled"} 1"#))
        backend.release.signal()
        // Recovered: healthy again, and the wedged request finished.
        try await withDeadlineThrowing(30, "/healthz to recover and the request to finish") {
            while try await WorkerEndpointTests.get(url).0 != 200 || !finished.load(ordering: .relaxed) {
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        scheduler.stop()
    }
}
