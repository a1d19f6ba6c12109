/// One partition of one topic.
public struct KafkaTopicPartition: Hashable, Sendable, CustomStringConvertible {
    public var topic: String
    public var partition: Int32

    public init(topic: String, partition: Int32) {
        self.topic = topic
        self.partition = partition
    }

    public var description: String { "\(topic)[\(partition)]" }
}

/// A partition with an offset: for commits, the offset of the *next* message to read.
public struct KafkaTopicPartitionOffset: Hashable, Sendable, CustomStringConvertible {
    public var topicPartition: KafkaTopicPartition
    /// A message offset, or a negative librdkafka logical offset (`-1001` = none stored).
    public var offset: Int64

    public init(topic: String, partition: Int32, offset: Int64) {
        self.topicPartition = KafkaTopicPartition(topic: topic, partition: partition)
        self.offset = offset
    }

    public var topic: String { topicPartition.topic }
    public var partition: Int32 { topicPartition.partition }
    public var description: String { "\(topicPartition)@\(offset)" }
}
