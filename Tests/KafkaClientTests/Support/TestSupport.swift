import Foundation
import KafkaClient
import Testing

/// A test that ran past its deadline (the awaited event never happened).
struct TestTimeout: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs `body`, failing with ``TestTimeout`` if it has not finished after `seconds`.
/// A deadline, not a synchronisation: `body` awaits the real event.
func withDeadline<T: Sendable>(
    _ seconds: Double = 60,
    _ what: String,
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw TestTimeout(what: what) }
        return value
    }
}

/// A topic name no other test (or earlier run against the same broker) uses.
func uniqueTopic(_ prefix: String) -> String {
    "\(prefix)-\(UUID().uuidString.prefix(8).lowercased())"
}

/// Reads `count` messages from `consumer`.
func collect(_ count: Int, from consumer: KafkaConsumer) async throws -> [KafkaConsumerMessage] {
    var result: [KafkaConsumerMessage] = []
    for try await message in consumer.messages {
        result.append(message)
        if result.count == count { break }
    }
    return result
}

/// Tracks a consumer's assignment from its events and lets tests await a condition on it.
actor AssignmentTracker {
    private(set) var owned: Set<KafkaTopicPartition> = []
    private var waiters: [(condition: (Set<KafkaTopicPartition>) -> Bool, continuation: CheckedContinuation<Void, Never>)] = []

    /// Starts following `consumer.events` (the tracker must be the events' only reader).
    nonisolated func follow(_ consumer: KafkaConsumer) -> Task<Void, Never> {
        Task {
            for await event in consumer.events {
                switch event {
                case .partitionsAssigned(let partitions): await self.apply(add: partitions, remove: [])
                case .partitionsRevoked(let partitions, _): await self.apply(add: [], remove: partitions)
                default: break
                }
            }
        }
    }

    private func apply(add: [KafkaTopicPartition], remove: [KafkaTopicPartition]) {
        owned.formUnion(add)
        owned.subtract(remove)
        let ready = waiters.filter { $0.condition(owned) }
        waiters.removeAll { $0.condition(owned) }
        for waiter in ready { waiter.continuation.resume() }
    }

    /// Returns once the owned set satisfies `condition`.
    func wait(until condition: @escaping @Sendable (Set<KafkaTopicPartition>) -> Bool) async {
        if condition(owned) { return }
        await withCheckedContinuation { waiters.append((condition, $0)) }
    }
}
