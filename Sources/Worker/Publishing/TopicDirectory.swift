import Foundation
import KafkaClient

/// Which topics exist and how many partitions each has, from cluster metadata. A failed
/// lookup is "unknown", never "absent": the caller retries it rather than rejecting a valid
/// request because the broker hiccupped or a topic was created seconds ago.
actor TopicDirectory {
    enum Answer: Equatable {
        case exists(partitions: Int)
        case absent
        /// The broker lists the topic with an error that will not pass (authorization).
        case unusable(String)
        /// The metadata request failed, or the topic's metadata is not ready; try again later.
        case unknown
    }

    private let producer: KafkaProducer
    /// Topics known to exist, with their partition counts (refreshed on a miss).
    private var known: [String: Int] = [:]
    /// Topics confirmed absent, and when.
    private var absentSince: [String: ContinuousClock.Instant] = [:]
    /// Topics found unusable, why and when: trusted for `unusableFor`, so that each record
    /// naming one does not wait out the lookup again.
    private var unusableSince: [String: (reason: String, at: ContinuousClock.Instant)] = [:]
    private let unusableFor: Duration = .seconds(30)
    /// Every topic the last successful metadata request listed.
    private var listed: Set<String> = []
    /// How long an "absent" answer is trusted before the broker is asked again.
    private let absentFor: Duration

    init(producer: KafkaProducer, absentFor: Duration = .seconds(5)) {
        self.producer = producer
        self.absentFor = absentFor
    }

    func lookup(_ topic: String) async -> Answer {
        if let partitions = known[topic] { return .exists(partitions: partitions) }
        if let since = absentSince[topic], ContinuousClock.now - since < absentFor { return .absent }
        if let unusable = unusableSince[topic], ContinuousClock.now - unusable.at < unusableFor { return .unusable(unusable.reason) }
        // The whole cluster's topics (asking for one topic could auto-create it).
        guard let metadata = try? await producer.metadata(timeout: .seconds(5)), !metadata.brokers.isEmpty else { return .unknown }
        listed = Set(metadata.topics.map(\.name))
        for found in metadata.topics where found.error == nil && !found.partitions.isEmpty {
            known[found.name] = found.partitions.count
        }
        if let partitions = known[topic] {
            absentSince[topic] = nil
            unusableSince[topic] = nil
            return .exists(partitions: partitions)
        }
        // Listed with an error: not usable yet (no leader) or not at all (authorization).
        if let listed = metadata.topics.first(where: { $0.name == topic }) {
            if let error = listed.error, !error.isRetriable {
                markUnusable(topic, "\(error)")
                return .unusable("\(error)")
            }
            return .unknown
        }
        absentSince[topic] = ContinuousClock.now
        return .absent
    }

    /// Remembers that `topic` cannot be used, for a while.
    func markUnusable(_ topic: String, _ reason: String) {
        unusableSince[topic] = (reason, ContinuousClock.now)
    }

    /// Whether the last successful metadata listed `topic` (perhaps with an error).
    func isListed(_ topic: String) -> Bool { listed.contains(topic) }

    /// Forgets what is known of `topic` (after a delivery failed for it).
    func forget(_ topic: String) {
        known[topic] = nil
    }
}
