import Foundation
import KafkaClient
import Testing

/// The real broker (Tansu) the test command starts. Integration tests fail — they are never
/// skipped — when it is not configured, so CI cannot go green without them.
enum TestBroker {
    static var bootstrapServers: String {
        get throws {
            guard let servers = ProcessInfo.processInfo.environment["SLUICE_TEST_BROKERS"], !servers.isEmpty else {
                throw BrokerMissing()
            }
            return servers
        }
    }

    struct BrokerMissing: Error, CustomStringConvertible {
        var description: String {
            "SLUICE_TEST_BROKERS is not set: integration tests need the real broker. Run `make test` (it starts ops/broker)."
        }
    }

    static func client() throws -> KafkaClientConfiguration {
        KafkaClientConfiguration(bootstrapServers: try bootstrapServers.split(separator: ",").map(String.init))
    }

    static func producer() throws -> KafkaProducer {
        try KafkaProducer(configuration: KafkaProducerConfiguration(client: client(), linger: .milliseconds(1)))
    }

    /// A consumer with a short session timeout: Tansu completes a join after about half of it.
    static func consumer(
        group: String,
        onRevocation: (@Sendable ([KafkaTopicPartition], Bool) -> Void)? = nil
    ) throws -> KafkaConsumer {
        try KafkaConsumer(
            configuration: KafkaConsumerConfiguration(client: client(), groupID: group, sessionTimeout: .seconds(6)),
            onRevocation: onRevocation
        )
    }

    static func createTopic(_ name: String, partitions: Int32) async throws {
        let admin = try KafkaAdmin(configuration: client())
        _ = try await admin.createTopics([KafkaTopicSpec(name: name, partitions: partitions)])
    }
}
