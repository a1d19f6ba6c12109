import AuditLog
import Foundation
import KafkaClient
import Logging
import Testing
@testable import Worker

/// Faults the real broker cannot be made to show, injected with librdkafka's mock cluster
/// (run in this test process; the worker processes connect to its brokers over loopback):
/// a reply topic the worker may not write, and a fatal producer error.
@Suite("Integration (mock cluster): an unwritable reply topic and a fatal producer error", .serialized)
struct MockFaultTests {
    static let topicAuthorizationFailed = KafkaMockCluster.BrokerError(rawValue: 29)  // TOPIC_AUTHORIZATION_FAILED
    static let unknownProducerID = KafkaMockCluster.BrokerError(rawValue: 59)         // UNKNOWN_PRODUCER_ID
    static let clusterAuthorizationFailed = KafkaMockCluster.BrokerError(rawValue: 31) // CLUSTER_AUTHORIZATION_FAILED
    static let initProducerID = KafkaMockCluster.APIKey(rawValue: 22)

    @Test("a reply the broker refuses (topic authorization failed) ends its request as error; the next one is answered")
    func unwritableReplyTopic() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        let harness = try await WorkerHarness(model: "echo", partitions: 1, brokers: cluster.bootstrapServers, createTopics: false)
        for topic in harness.allTopics { try cluster.createTopic(topic, partitions: 1) }
        defer { harness.stopAll() }
        // The worker waits 3 s for a batch to fill before it answers, so the error pushed
        // after the test's own produce is met by the worker's reply.
        try await harness.startWorker("w1", extra: ["SLUICE_WORKER_MAX_WAIT_MS": "3000"])
        try await harness.send([(key: "c", value: WorkerHarness.request("first", extra: ["max_tokens": 2]), headers: [])])
        #expect(WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: 1)).first?["status"] as? String == "ok")
        // The next produce request after the test's own — the reply to "refused" — is refused
        // (pushed as soon as the broker acknowledged the request, before the producer closes).
        let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: harness.client))
        try await producer.send(KafkaProducerMessage(topic: harness.requestsTopic, key: Array("c".utf8),
                                                     value: WorkerHarness.request("refused", extra: ["max_tokens": 2]), headers: []))
        cluster.pushRequestErrors(.produce, [Self.topicAuthorizationFailed])
        try await producer.close()
        let replies = WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: 2))
        let failure = try #require(replies.first { $0["request_id"] as? String == "refused" })
        #expect(failure["status"] as? String == "error" && (failure["error"] as? [String: Any])?["code"] as? String == "reply_undeliverable")
        let dead = try await harness.read(harness.deadLettersTopic, count: 1)
        #expect(dead.first?.headers.last(named: "sluice-error-code")?.stringValue == "reply_undeliverable")
        try await harness.send([(key: "c", value: WorkerHarness.request("after", extra: ["max_tokens": 2]), headers: [])])
        let all = WorkerHarness.objects(try await harness.read(harness.repliesTopic, count: 3))
        #expect(all.contains { $0["request_id"] as? String == "after" && $0["status"] as? String == "ok" })
        let row = try #require(try await harness.auditDatabase(rows: 3).record(requestID: "refused"))
        #expect(row.status == .error && row.errorCode == "reply_undeliverable")
        try await harness.waitForCommittedToReachEnd(harness.requestsTopic)
        #expect(harness.isRunning("w1"))
    }

    @Test("a fatal producer error ends run() with WorkerFatalError after shutting down; the unanswered request stays uncommitted")
    func fatalProducerError() async throws {
        let cluster = try KafkaMockCluster(brokers: 1)
        let prefix = "fatal-\(UUID().uuidString.prefix(8).lowercased())"
        var configuration = SluiceConfiguration()
        configuration.kafka.brokers = cluster.bootstrapServers.split(separator: ",").map(String.init)
        configuration.kafka.groupId = "\(prefix)-group"
        configuration.kafka.sessionTimeoutMs = 6_000
        configuration.topics.requests = ["\(prefix).requests"]
        configuration.topics.replies = "\(prefix).replies"
        configuration.topics.escalations = "\(prefix).escalations"
        configuration.topics.deadLetters = "\(prefix).dlq"
        for topic in configuration.topics.requests + [configuration.topics.replies, configuration.topics.escalations, configuration.topics.deadLetters] {
            try cluster.createTopic(topic, partitions: 1)
        }
        configuration.worker.model = "echo"
        configuration.worker.metricsPort = 0
        configuration.worker.commitIntervalMs = 100
        configuration.worker.gracePeriodMs = 2_000
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(prefix)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        configuration.audit.db = directory.appendingPathComponent("audit.sqlite").path
        let audit = try AuditDatabase(path: configuration.audit.db, configuration: configuration.audit.logConfiguration())
        let worker = try WorkerService(configuration: configuration, backend: EchoBackend(), audit: audit, logger: Logger(label: "test.worker"))
        let run = Task { try await worker.run() }
        defer { run.cancel() }

        let client = KafkaClientConfiguration(bootstrapServers: configuration.kafka.brokers)
        func post(_ id: String) async throws {
            let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: client))
            try await producer.send(KafkaProducerMessage(topic: configuration.topics.requests[0], key: nil, value: WorkerHarness.request(id, extra: ["max_tokens": 2]), headers: []))
            try await producer.close()
        }
        try await post("first")
        let replies = try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: client, groupID: "\(prefix)-reader", sessionTimeout: .seconds(6)))
        defer { Task { try? await replies.close() } }
        try replies.assign([KafkaTopicPartitionOffset(topic: configuration.topics.replies, partition: 0, offset: 0)])
        let first = try await withDeadlineThrowing(60, "the first reply") {
            for try await message in replies.messages { return message }
            throw WorkerHarness.Missing(description: "replies ended")
        }
        #expect(WorkerHarness.objects([first]).first?["request_id"] as? String == "first")

        worker.producer.raiseFatalErrorForTesting(reason: "injected by the test")
        try await post("unanswerable")
        let outcome = await withDeadline(60) { await run.result }
        guard case .failure(let error)? = outcome else {
            Issue.record("run() did not end with an error: \(String(describing: outcome))")
            return
        }
        #expect(error is WorkerFatalError, "\(error)")
        #expect(worker.fatal.reason?.contains("injected by the test") == true)
        // Only "first" was answered: the committed offset is 1, so the next owner answers the other.
        let probe = try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: client, groupID: configuration.kafka.groupId, sessionTimeout: .seconds(6)))
        defer { Task { try? await probe.close() } }
        let committed = try await probe.committedOffsets(for: [KafkaTopicPartition(topic: configuration.topics.requests[0], partition: 0)])
        #expect(committed.first?.offset == 1)
        #expect(try audit.record(requestID: "unanswerable") == nil, "no audit row for a request that was not answered")
    }

    @Test("/healthz answers 503 with the reason once the fatal latch has tripped, 200 before")
    func healthReportsFatal() async throws {
        let port = try freeLocalPort()
        let latch = FatalLatch()
        let health = HealthMonitor(fatal: latch, auditFailureLimit: .seconds(60), consumeStallLimit: .seconds(60), schedulerStallLimit: .seconds(60),
                                   schedulerStall: { nil })
        let endpoint = Task {
            try await HealthEndpoint(metrics: WorkerMetrics(model: ModelIdentity(name: "echo", quantization: "-", sha256: "-"), worker: "w", latencyObjective: .seconds(1)),
                                     isReady: { true }, health: health, port: port).run()
        }
        defer { endpoint.cancel() }
        let url = "http://127.0.0.1:\(port)/healthz"
        let healthy = try await withDeadlineThrowing(30, "the endpoint to listen") {
            while true {
                let (code, body) = try await WorkerEndpointTests.get(url)
                if code != 0 { return (code, body) }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
        #expect(healthy.0 == 200)
        latch.trip("producer: fatal")
        let (code, body) = try await WorkerEndpointTests.get(url)
        #expect(code == 503 && body.contains("fatal_client_error: producer: fatal"))
    }
}

/// `body`'s result, or nil after `seconds`.
func withDeadline<T: Sendable>(_ seconds: Double, _ body: @escaping @Sendable () async -> T) async -> T? {
    await withTaskGroup(of: T?.self) { group in
        group.addTask { await body() }
        group.addTask {
            try? await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        return await group.next() ?? nil
    }
}
