import Foundation
@testable import KafkaClient
import Synchronization
import Testing

/// The Kafka layer against librdkafka's in-process mock cluster: fast, and able to inject
/// broker faults a real broker cannot be made to produce on demand.
@Suite("KafkaClient on the mock cluster")
struct MockClusterTests {
    let cluster: KafkaMockCluster
    let topic = uniqueTopic("mock")

    init() throws {
        cluster = try KafkaMockCluster(brokers: 3)
        try cluster.createTopic(topic, partitions: 3)
    }

    private func client() -> KafkaClientConfiguration {
        KafkaClientConfiguration(bootstrapServers: cluster.bootstrapServers.split(separator: ",").map(String.init))
    }

    private func producer(properties: [String: String] = [:]) throws -> KafkaProducer {
        try KafkaProducer(
            configuration: KafkaProducerConfiguration(
                client: client(),
                linger: .milliseconds(1),
                deliveryTimeout: .seconds(20),
                properties: properties
            )
        )
    }

    private func consumer() throws -> KafkaConsumer {
        try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: client(), groupID: uniqueTopic("g"), sessionTimeout: .seconds(6)))
    }

    @Test("produce and consume keep key, value and headers")
    func roundTrip() async throws {
        let producer = try producer()
        let sent = KafkaProducerMessage(
            topic: topic,
            partition: 1,
            key: Array("customer-7".utf8),
            value: Array("{\"request_id\":\"r1\"}".utf8),
            headers: [KafkaHeader(name: "correlation-id", string: "c-1"), KafkaHeader(name: "empty", value: nil)]
        )
        let report = try await producer.send(sent)
        #expect(report.topic == topic && report.partition == 1 && report.offset == 0)

        let consumer = try consumer()
        try consumer.subscribe(topics: [topic])
        let received = try await withDeadline(30, "the message") { try await collect(1, from: consumer) }
        #expect(received[0].key == sent.key)
        #expect(received[0].value == sent.value)
        #expect(received[0].headers == sent.headers)
        #expect(received[0].offset == 0)
        try await consumer.close()
        try await producer.close()
    }

    @Test("retriable broker errors on Produce are retried until the send succeeds, without duplicates")
    func retriableProduceErrors() async throws {
        let producer = try producer()
        cluster.pushRequestErrors(.produce, [.notLeaderForPartition, .requestTimedOut, .notEnoughReplicas])
        let report = try await withDeadline(30, "delivery after retries") {
            try await producer.send(KafkaProducerMessage(topic: topic, partition: 0, value: Array("after faults".utf8)))
        }
        #expect(report.partition == 0)
        // Idempotence: however many attempts were made, exactly one copy was written.
        try await producer.send(KafkaProducerMessage(topic: topic, partition: 0, value: Array("marker".utf8)))
        let consumer = try consumer()
        try consumer.subscribe(topics: [topic])
        let received = try await withDeadline(30, "both messages") { try await collect(2, from: consumer) }
        #expect(received.map { String(decoding: $0.value, as: UTF8.self) } == ["after faults", "marker"])
        try await consumer.close()
        try await producer.close()
    }

    @Test("a non-retriable broker error fails the send with a delivery error")
    func permanentProduceError() async throws {
        let producer = try producer()
        cluster.pushRequestErrors(.produce, [.topicAuthorizationFailed])
        let error = try await withDeadline(30, "the delivery failure") { () async throws -> KafkaError? in
            do {
                try await producer.send(KafkaProducerMessage(topic: topic, partition: 2, value: [1, 2, 3]))
                return nil
            } catch let error as KafkaError {
                return error
            }
        }
        let failure = try #require(error)
        #expect(failure.code == .delivery)
        #expect(failure.rdKafkaName == "TOPIC_AUTHORIZATION_FAILED")
        #expect(!failure.isRetriable)
        try await producer.close()
    }

    @Test("a commit the broker refuses is surfaced with its code and commits nothing; the next commit succeeds")
    func commitRetry() async throws {
        let producer = try producer()
        for index in 0..<3 {
            try await producer.send(KafkaProducerMessage(topic: topic, partition: 0, value: [UInt8(index)]))
        }
        let consumer = try consumer()
        try consumer.subscribe(topics: [topic])
        let received = try await withDeadline(30, "3 messages") { try await collect(3, from: consumer) }
        try consumer.storeOffset(received[2])
        let partition = KafkaTopicPartition(topic: topic, partition: 0)
        // A permanent error librdkafka does not retry itself: the caller must see it.
        cluster.pushRequestErrors(.offsetCommit, [.offsetMetadataTooLarge])
        let error = await #expect(throws: KafkaError.self) { try await consumer.commit() }
        #expect(error?.rdKafkaName == "OFFSET_METADATA_TOO_LARGE", "\(String(describing: error))")
        #expect(try await consumer.committedOffsets(for: [partition]).map(\.offset) != [3], "nothing committed by the refused commit")
        try await consumer.commit([KafkaTopicPartitionOffset(topic: topic, partition: 0, offset: 3)])
        #expect(try await consumer.committedOffsets(for: [partition]).map(\.offset) == [3])
        try await consumer.close()
        try await producer.close()
    }

    @Test("a member joins while messages are taken in batches: no message of a revoked partition is returned after its revocation, and the next owner gets every one not handled")
    func revocationDuringBatches() async throws {
        let total = 6_000
        let producer = try producer()
        try await withThrowingTaskGroup(of: Void.self) { sends in
            for index in 0..<total {
                sends.addTask { _ = try await producer.send(KafkaProducerMessage(topic: topic, partition: Int32(index % 3), value: Array("m\(index)".utf8))) }
            }
            try await sends.waitForAll()
        }
        try await producer.close()

        enum Event: Sendable { case assigned([KafkaTopicPartition]), revoked([KafkaTopicPartition]), message(KafkaTopicPartition) }
        let events = Locked<[Event]>([])
        // What the first member handled: committed at its revocation, as the worker does.
        let handled = Locked<[KafkaTopicPartition: Int64]>([:])
        let first = Locked<KafkaConsumer?>(nil)
        let group = uniqueTopic("g")
        let configuration = KafkaConsumerConfiguration(client: client(), groupID: group, sessionTimeout: .seconds(6))
        let member = try KafkaConsumer(
            configuration: configuration,
            onAssignment: { partitions in events.withLock { $0.append(.assigned(partitions)) } },
            onRevocation: { partitions, _ in
                let offsets = handled.withLock { handled in
                    partitions.compactMap { partition in handled[partition].map { KafkaTopicPartitionOffset(topic: partition.topic, partition: partition.partition, offset: $0) } }
                }
                try? first.withLock { $0 }?.commitBlocking(offsets)
                events.withLock { $0.append(.revoked(partitions)) }
            })
        first.withLock { $0 = member }
        let second = try KafkaConsumer(configuration: configuration)
        let inbox = Inbox(expected: total)
        try member.subscribe(topics: [topic])
        try await withThrowingTaskGroup(of: Void.self) { members in
            members.addTask {
                for try await message in member.messages(batchSize: 64) {
                    events.withLock { $0.append(.message(message.topicPartition)) }
                    handled.withLock { $0[message.topicPartition] = message.nextOffset.offset }
                    await inbox.add(message, from: "first")
                    // Slow handling until the rebalance, so it comes while a backlog is being taken
                    // (at 1 ms a loaded CI machine's first member took all 6,000 before the
                    // rebalance came; at 5 ms that takes 30 s).
                    if !events.withLock({ $0.contains { if case .revoked = $0 { true } else { false } } }) { try await Task.sleep(for: .milliseconds(5)) }
                }
            }
            try await withDeadline(60, "the first member's first messages") { await inbox.wait { $0.count >= 100 } }
            try second.subscribe(topics: [topic])
            members.addTask {
                for try await message in second.messages(batchSize: 64) { await inbox.add(message, from: "second") }
            }
            try await withDeadline(120, "\(total) messages between the two members") { await inbox.waitUntilComplete() }
            members.cancelAll()
            try await members.waitForAll()
        }
        #expect(await inbox.counts.count == total, "every message reached a member")
        #expect((await inbox.perMember["second"] ?? 0) > 0, "the second member took partitions over")
        // Replay the first member's events: every message it returned was of a partition it owned then.
        var owned: Set<KafkaTopicPartition> = []
        var revocations = 0
        for event in events.withLock({ $0 }) {
            switch event {
            case .assigned(let partitions): owned.formUnion(partitions)
            case .revoked(let partitions): owned.subtract(partitions); revocations += 1
            case .message(let partition): #expect(owned.contains(partition), "a message of \(partition) returned while not owned")
            }
        }
        #expect(revocations > 0)
        try await member.close()
        try await second.close()
    }

    @Test("a closed producer refuses sends with a clear error")
    func closedProducer() async throws {
        let producer = try producer()
        try await producer.close()
        await #expect(throws: KafkaError.self) {
            try await producer.send(KafkaProducerMessage(topic: topic, value: [1]))
        }
    }
}

@Suite("KafkaClient configuration and version checks")
struct KafkaConfigurationTests {
    @Test("bad configuration is rejected with the key named")
    func badConfiguration() throws {
        let noServers = KafkaClientConfiguration(bootstrapServers: [])
        #expect(throws: KafkaError.self) { try KafkaProducer(configuration: KafkaProducerConfiguration(client: noServers)) }

        let noPort = KafkaClientConfiguration(bootstrapServers: ["localhost"])
        #expect(throws: KafkaError.self) { try KafkaAdmin(configuration: noPort) }

        let unknownProperty = KafkaClientConfiguration(bootstrapServers: ["127.0.0.1:1"], properties: ["no.such.property": "1"])
        do {
            _ = try KafkaProducer(configuration: KafkaProducerConfiguration(client: unknownProperty))
            Issue.record("an unknown librdkafka property was accepted")
        } catch let error as KafkaError {
            #expect(error.code == .configuration)
            #expect(error.message.contains("no.such.property"))
        }

        let emptyGroup = KafkaConsumerConfiguration(client: KafkaClientConfiguration(bootstrapServers: ["h:1"]), groupID: "")
        #expect(throws: KafkaError.self) { try KafkaConsumer(configuration: emptyGroup) }
    }

    @Test("the linked librdkafka passes the version check and Debian 12's 2.0.2 would not")
    func versionCheck() throws {
        try Librdkafka.checkVersion()
        #expect(Librdkafka.versionNumber >= 0x0201_0200)
        #expect(Librdkafka.version.hasPrefix("2."))
        do {
            try Librdkafka.check(versionNumber: 0x0200_02FF, versionString: "2.0.2")
            Issue.record("librdkafka 2.0.2 was accepted")
        } catch {
            #expect(error.code == .unsupportedLibrdkafka)
            #expect(error.message.contains("ops/bootstrap"))
        }
        try Librdkafka.check(versionNumber: 0x0201_02FF, versionString: "2.1.2")
    }
}

/// A value behind a lock, shared by reference (callbacks and tasks).
final class Locked<Value: Sendable>: Sendable {
    private let stored: Mutex<Value>
    init(_ value: Value) { stored = Mutex(value) }
    func withLock<Result>(_ body: (inout Value) -> Result) -> Result { stored.withLock { body(&$0) } }
}
