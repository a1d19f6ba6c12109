/// Settings of a consumer in a consumer group.
///
/// Offsets are managed by the application: librdkafka never stores an offset on its own
/// (`enable.auto.offset.store=false`); the application stores the next offset to read once
/// a message is fully handled, and commits stored offsets with ``KafkaConsumer/commit()``
/// or ``KafkaConsumer/commitAsync()`` (or periodically, when `autoCommitInterval` is set).
public struct KafkaConsumerConfiguration: Sendable, Equatable {
    /// Where to start when the group has no committed offset for a partition.
    public enum OffsetReset: String, Sendable { case earliest, latest }

    /// How partitions move between members on a rebalance.
    public enum AssignmentStrategy: String, Sendable {
        /// Incremental (KIP-429): members keep the partitions they still own.
        case cooperativeSticky = "cooperative-sticky"
        /// Eager: every member gives up everything on each rebalance.
        case range
        case roundRobin = "roundrobin"
    }

    public var client: KafkaClientConfiguration
    /// The consumer group; every Sluice worker of one deployment shares it.
    public var groupID: String
    public var offsetReset: OffsetReset
    public var assignmentStrategy: AssignmentStrategy
    /// A member that sends no heartbeat for this long is removed from the group.
    public var sessionTimeout: Duration
    /// A member that does not poll for this long leaves the group.
    public var maxPollInterval: Duration
    /// When set, librdkafka commits stored offsets at this interval (and on close).
    public var autoCommitInterval: Duration?
    /// Raw librdkafka properties, applied last (after `client.properties`).
    public var properties: [String: String]

    /// - Parameters:
    ///   - client: the shared connection settings.
    ///   - groupID: the consumer group id.
    public init(
        client: KafkaClientConfiguration,
        groupID: String,
        offsetReset: OffsetReset = .earliest,
        assignmentStrategy: AssignmentStrategy = .cooperativeSticky,
        sessionTimeout: Duration = .seconds(45),
        maxPollInterval: Duration = .seconds(300),
        autoCommitInterval: Duration? = nil,
        properties: [String: String] = [:]
    ) {
        self.client = client
        self.groupID = groupID
        self.offsetReset = offsetReset
        self.assignmentStrategy = assignmentStrategy
        self.sessionTimeout = sessionTimeout
        self.maxPollInterval = maxPollInterval
        self.autoCommitInterval = autoCommitInterval
        self.properties = properties
    }

    func validate() throws(KafkaError) {
        try client.validate()
        guard !groupID.isEmpty else {
            throw KafkaError(code: .configuration, message: "the consumer group id is empty")
        }
        guard sessionTimeout >= .seconds(1) else {
            throw KafkaError(code: .configuration, message: "sessionTimeout must be at least 1 s")
        }
        guard maxPollInterval >= sessionTimeout else {
            throw KafkaError(
                code: .configuration,
                message: "maxPollInterval must not be shorter than sessionTimeout"
            )
        }
    }

    var librdkafkaProperties: [String: String] {
        var result = client.librdkafkaProperties
        result["request.timeout.ms"] = nil  // a producer property; consumers warn about it
        result.merge([
            "group.id": groupID,
            "auto.offset.reset": offsetReset.rawValue,
            "partition.assignment.strategy": assignmentStrategy.rawValue,
            "session.timeout.ms": String(sessionTimeout.milliseconds),
            "heartbeat.interval.ms": String(max(100, sessionTimeout.milliseconds / 3)),
            "max.poll.interval.ms": String(maxPollInterval.milliseconds),
            "enable.auto.offset.store": "false",
            "enable.auto.commit": autoCommitInterval == nil ? "false" : "true",
            "enable.partition.eof": "false",
        ]) { _, new in new }
        if let autoCommitInterval {
            result["auto.commit.interval.ms"] = String(autoCommitInterval.milliseconds)
        }
        result.merge(client.properties) { _, new in new }
        result.merge(properties) { _, new in new }
        return result
    }
}
