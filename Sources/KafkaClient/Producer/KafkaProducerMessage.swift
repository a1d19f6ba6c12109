/// A record to produce.
public struct KafkaProducerMessage: Sendable, Hashable {
    public var topic: String
    /// A fixed partition, or nil to let the partitioner choose from the key.
    public var partition: Int32?
    public var key: [UInt8]?
    public var value: [UInt8]
    public var headers: [KafkaHeader]

    /// - Parameters:
    ///   - topic: the destination topic.
    ///   - partition: nil to partition by key (murmur2-compatible with Java clients' default
    ///     only when `partitioner=murmur2_random` is configured; librdkafka's default is
    ///     `consistent_random`).
    public init(
        topic: String,
        partition: Int32? = nil,
        key: [UInt8]? = nil,
        value: [UInt8],
        headers: [KafkaHeader] = []
    ) {
        self.topic = topic
        self.partition = partition
        self.key = key
        self.value = value
        self.headers = headers
    }
}

/// Where a message was written.
public struct KafkaDeliveryReport: Sendable, Hashable {
    public var topic: String
    public var partition: Int32
    public var offset: Int64
}
