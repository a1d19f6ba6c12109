import Logging

/// Cluster administration: topics and metadata.
public final class KafkaAdmin: Sendable {
    private let client: RDKafkaClient

    /// - Parameters:
    ///   - configuration: connection settings (the admin client is a librdkafka producer
    ///     handle that never produces).
    public init(configuration: KafkaClientConfiguration, logger: Logger = Logger(label: "sluice.kafka.admin")) throws {
        try configuration.validate()
        var properties = configuration.librdkafkaProperties
        properties.merge(configuration.properties) { _, new in new }
        self.client = try RDKafkaClient(kind: .producer, properties: properties, callbacks: RDKafkaCallbacks(logger: logger))
    }

    /// Creates `topics`; a topic that already exists counts as success (`.alreadyExists`).
    /// Throws the first other per-topic error.
    public func createTopics(
        _ topics: [KafkaTopicSpec],
        timeout: Duration = .seconds(30)
    ) async throws -> [String: KafkaTopicCreation] {
        let outcome = try await runBlocking { [client] in
            try client.createTopics(topics, timeoutMs: Int32(timeout.milliseconds))
        }
        var result: [String: KafkaTopicCreation] = [:]
        for spec in topics {
            switch outcome[spec.name] {
            case .some(.none):
                result[spec.name] = .created
            case .some(.some(let error)) where error.rdKafkaName == "TOPIC_ALREADY_EXISTS":
                result[spec.name] = .alreadyExists
            case .some(.some(let error)):
                throw error
            case .none:
                throw KafkaError(code: .topicCreation, message: "the broker did not answer for topic \(spec.name)")
            }
        }
        return result
    }

    /// Brokers and topics; only `topic` when given (which may auto-create it on brokers
    /// that allow that).
    public func metadata(topic: String? = nil, timeout: Duration = .seconds(10)) async throws -> KafkaClusterMetadata {
        try await runBlocking { [client] in try client.metadata(topic: topic, timeoutMs: Int32(timeout.milliseconds)) }
    }
}
