/// A topic to create.
public struct KafkaTopicSpec: Sendable, Hashable {
    public var name: String
    public var partitions: Int32
    public var replicationFactor: Int16
    /// Topic-level configuration, e.g. `retention.ms`.
    public var config: [String: String]

    public init(name: String, partitions: Int32, replicationFactor: Int16 = 1, config: [String: String] = [:]) {
        self.name = name
        self.partitions = partitions
        self.replicationFactor = replicationFactor
        self.config = config
    }
}

/// What happened to one topic of a create request.
public enum KafkaTopicCreation: Sendable, Equatable {
    case created
    case alreadyExists
}

/// A snapshot of the cluster: brokers and topics with their partitions.
public struct KafkaClusterMetadata: Sendable {
    public struct Broker: Sendable, Hashable {
        public var id: Int32
        public var host: String
        public var port: Int
    }

    public struct Partition: Sendable {
        public var id: Int32
        public var leader: Int32
        public var replicas: [Int32]
        public var error: KafkaError?
    }

    public struct Topic: Sendable {
        public var name: String
        public var partitions: [Partition]
        public var error: KafkaError?
    }

    public var brokers: [Broker]
    public var topics: [Topic]

    /// The topic named `name`, if the cluster knows it.
    public func topic(named name: String) -> Topic? {
        topics.first { $0.name == name && $0.error == nil }
    }
}
