import Foundation
import KafkaClient
import Testing

/// The Kafka layer against the real broker (Tansu) that `make test` starts.
@Suite("Integration: KafkaClient on the real broker")
struct BrokerIntegrationTests {
    @Test("produce/consume round trip keeps key, value and headers")
    func roundTrip() async throws {
        let topic = uniqueTopic("it-roundtrip")
        try await TestBroker.createTopic(topic, partitions: 3)
        let producer = try TestBroker.producer()
        let messages = (0..<20).map { index in
            KafkaProducerMessage(
                topic: topic,
                key: Array("conversation-\(index % 4)".utf8),
                value: Array("{\"request_id\":\"r\(index)\",\"prompt\":\"年费多少？\"}".utf8),
                headers: [
                    KafkaHeader(name: "correlation-id", string: "c-\(index)"),
                    KafkaHeader(name: "kafka_replyTopic", string: "replies"),
                    KafkaHeader(name: "binary", value: [0, 255, 7]),
                ]
            )
        }
        for message in messages { try await producer.send(message) }

        let consumer = try TestBroker.consumer(group: uniqueTopic("g"))
        try consumer.subscribe(topics: [topic])
        let received = try await withDeadline(60, "20 messages") { try await collect(20, from: consumer) }
        let byValue = Dictionary(uniqueKeysWithValues: received.map { ($0.value, $0) })
        for sent in messages {
            let got = try #require(byValue[sent.value])
            #expect(got.key == sent.key)
            #expect(got.headers == sent.headers)
            #expect(got.timestamp != nil)
        }
        // A key always lands on one partition (keeps a conversation ordered).
        let partitionsByKey = Dictionary(grouping: received, by: { $0.key! }).mapValues { Set($0.map(\.partition)) }
        #expect(partitionsByKey.values.allSatisfy { $0.count == 1 })
        try await consumer.close()
        try await producer.close()
    }

    @Test("two consumers in one group split a 6-partition topic and receive every message exactly once")
    func groupSplit() async throws {
        let topic = uniqueTopic("it-group")
        let group = uniqueTopic("g")
        try await TestBroker.createTopic(topic, partitions: 6)
        let first = try TestBroker.consumer(group: group)
        let second = try TestBroker.consumer(group: group)
        let firstOwns = AssignmentTracker()
        let secondOwns = AssignmentTracker()
        let followers = [firstOwns.follow(first), secondOwns.follow(second)]
        try first.subscribe(topics: [topic])
        try second.subscribe(topics: [topic])

        let inbox = Inbox(expected: 600)
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            for (name, consumer) in [("first", first), ("second", second)] {
                tasks.addTask {
                    for try await message in consumer.messages { await inbox.add(message, from: name) }
                }
            }
            try await withDeadline(90, "both members to own 3 partitions") {
                await firstOwns.wait { $0.count == 3 }
                await secondOwns.wait { $0.count == 3 }
            }
            #expect(await firstOwns.owned.isDisjoint(with: secondOwns.owned))
            let producer = try TestBroker.producer()
            for index in 0..<600 {
                try await producer.send(
                    KafkaProducerMessage(topic: topic, partition: Int32(index % 6), value: Array("m\(index)".utf8))
                )
            }
            try await producer.close()
            try await withDeadline(60, "600 messages") { await inbox.waitUntilComplete() }
            tasks.cancelAll()
            try await tasks.waitForAll()
        }
        let (counts, perMember) = await (inbox.counts, inbox.perMember)
        #expect(counts.count == 600, "distinct messages received")
        #expect(counts.values.allSatisfy { $0 == 1 }, "no message delivered twice")
        #expect(perMember["first"] == 300 && perMember["second"] == 300)
        try await first.close()
        try await second.close()
        for follower in followers { await follower.value }
    }

    @Test("commit, close, reopen: the group resumes right after the committed offset")
    func commitAndResume() async throws {
        let topic = uniqueTopic("it-commit")
        let group = uniqueTopic("g")
        try await TestBroker.createTopic(topic, partitions: 1)
        let producer = try TestBroker.producer()
        for index in 0..<10 {
            try await producer.send(KafkaProducerMessage(topic: topic, value: Array("m\(index)".utf8)))
        }
        try await producer.close()

        let first = try TestBroker.consumer(group: group)
        try first.subscribe(topics: [topic])
        let head = try await withDeadline(60, "the first 4 messages") { try await collect(4, from: first) }
        #expect(head.map(\.offset) == [0, 1, 2, 3])
        try first.storeOffset(head[3])
        try await first.commit()
        let partition = KafkaTopicPartition(topic: topic, partition: 0)
        #expect(try await first.committedOffsets(for: [partition]).map(\.offset) == [4])
        try await first.close()

        let second = try TestBroker.consumer(group: group)
        try second.subscribe(topics: [topic])
        let rest = try await withDeadline(60, "the remaining 6 messages") { try await collect(6, from: second) }
        #expect(rest.map(\.offset) == [4, 5, 6, 7, 8, 9], "nothing re-delivered, nothing skipped")
        #expect(rest.map { String(decoding: $0.value, as: UTF8.self) } == (4..<10).map { "m\($0)" })
        try await second.close()
    }

    @Test("pause stops delivery from a partition and resume restarts it")
    func pauseAndResume() async throws {
        let topic = uniqueTopic("it-pause")
        try await TestBroker.createTopic(topic, partitions: 2)
        let consumer = try TestBroker.consumer(group: uniqueTopic("g"))
        let owns = AssignmentTracker()
        let follower = owns.follow(consumer)
        try consumer.subscribe(topics: [topic])
        let paused = KafkaTopicPartition(topic: topic, partition: 0)

        let inbox = Inbox(expected: 10)
        let reader = Task {
            for try await message in consumer.messages { await inbox.add(message, from: "consumer") }
        }
        try await withDeadline(60, "the assignment") { await owns.wait { $0.count == 2 } }
        try consumer.pause([paused])

        let producer = try TestBroker.producer()
        for index in 0..<5 {
            try await producer.send(KafkaProducerMessage(topic: topic, partition: 0, value: Array("p0-\(index)".utf8)))
        }
        for index in 0..<5 {
            try await producer.send(KafkaProducerMessage(topic: topic, partition: 1, value: Array("p1-\(index)".utf8)))
        }
        // Partition 1's messages, written after partition 0's, all arrive; none of 0's do.
        try await withDeadline(60, "partition 1's messages") { await inbox.wait { $0.count == 5 } }
        #expect(await inbox.partitions == [1])

        try consumer.resume([paused])
        try await withDeadline(60, "partition 0's messages after resume") { await inbox.waitUntilComplete() }
        #expect(await inbox.partitions == [0, 1])
        #expect(await inbox.counts.count == 10)
        reader.cancel()
        _ = await reader.result
        try await producer.close()
        try await consumer.close()
        await follower.value
    }
}

/// Collects consumed messages and lets a test await counts without polling.
actor Inbox {
    let expected: Int
    private(set) var counts: [String: Int] = [:]
    private(set) var perMember: [String: Int] = [:]
    private(set) var partitions: Set<Int32> = []
    private var waiters: [(condition: ([String: Int]) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []

    init(expected: Int) { self.expected = expected }

    func add(_ message: KafkaConsumerMessage, from member: String) {
        counts[String(decoding: message.value, as: UTF8.self), default: 0] += 1
        perMember[member, default: 0] += 1
        partitions.insert(message.partition)
        let ready = waiters.filter { $0.condition(counts) }
        waiters.removeAll { $0.condition(counts) }
        for waiter in ready { waiter.continuation.resume() }
    }

    /// Returns once the distinct messages received satisfy `condition`.
    func wait(until condition: @escaping @Sendable ([String: Int]) -> Bool) async {
        if condition(counts) { return }
        await withCheckedContinuation { waiters.append((condition, $0)) }
    }

    func waitUntilComplete() async {
        let expected = expected
        await wait { $0.count >= expected }
    }
}
