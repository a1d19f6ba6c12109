import Foundation

/// A Kafka record header. Kafka allows repeated names and null values.
public struct KafkaHeader: Hashable, Sendable {
    public var name: String
    public var value: [UInt8]?

    public init(name: String, value: [UInt8]?) {
        self.name = name
        self.value = value
    }

    /// A header with a UTF-8 string value.
    public init(name: String, string: String) {
        self.init(name: name, value: Array(string.utf8))
    }

    /// The value decoded as UTF-8, or nil when absent or not valid UTF-8.
    public var stringValue: String? {
        value.flatMap { String(validating: $0, as: UTF8.self) }
    }
}

extension Array where Element == KafkaHeader {
    /// The last header named `name` (Kafka's convention when a name repeats).
    public func last(named name: String) -> KafkaHeader? {
        last { $0.name == name }
    }
}

/// One record read from a partition.
public struct KafkaConsumerMessage: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]
    /// The record's timestamp (create or log-append time), when the broker sent one.
    public var timestamp: Date?

    public init(
        topic: String,
        partition: Int32,
        offset: Int64,
        key: [UInt8]?,
        value: [UInt8],
        headers: [KafkaHeader],
        timestamp: Date?
    ) {
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.value = value
        self.headers = headers
        self.timestamp = timestamp
    }

    public var topicPartition: KafkaTopicPartition {
        KafkaTopicPartition(topic: topic, partition: partition)
    }

    /// The offset to commit once this message is handled: the next one to read.
    public var nextOffset: KafkaTopicPartitionOffset {
        KafkaTopicPartitionOffset(topic: topic, partition: partition, offset: offset + 1)
    }
}

/// What happens to a consumer besides messages.
public enum KafkaConsumerEvent: Sendable {
    /// Partitions were added to this member's assignment.
    case partitionsAssigned([KafkaTopicPartition])
    /// Partitions were handed back (`lost == false`) or taken away after a session
    /// timeout (`lost == true`; their offsets can no longer be committed).
    case partitionsRevoked([KafkaTopicPartition], lost: Bool)
    /// An asynchronous commit finished.
    case offsetsCommitted(Result<[KafkaTopicPartitionOffset], KafkaError>)
    /// A non-fatal or fatal error (broker down, authentication, a partition error).
    case error(KafkaError)
}
