import ArgumentParser
import KafkaClient
import Worker

/// A consumer reading the reply topic from its current end, assigned before any request is
/// sent so no reply can be missed (used by `send` and `load`).
enum ReplyListener {
    static func fromEnd(of configuration: SluiceConfiguration, groupID: String) async throws -> KafkaConsumer {
        let client = configuration.kafka.clientConfiguration
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(
            client: client, groupID: groupID, offsetReset: .latest, sessionTimeout: .seconds(6)))
        let admin = try KafkaAdmin(configuration: client)
        guard let replies = try await admin.metadata().topic(named: configuration.topics.replies) else {
            throw ValidationError("the reply topic \(configuration.topics.replies) does not exist (run `sluice topics create`)")
        }
        var start: [KafkaTopicPartitionOffset] = []
        for partition in replies.partitions {
            let (_, high) = try await consumer.watermarks(for: KafkaTopicPartition(topic: replies.name, partition: partition.id))
            start.append(KafkaTopicPartitionOffset(topic: replies.name, partition: partition.id, offset: high))
        }
        try consumer.assign(start)
        return consumer
    }
}
