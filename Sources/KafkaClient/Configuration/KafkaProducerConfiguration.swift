/// Settings of a producer. Idempotent by default: retries never duplicate or reorder
/// messages within a partition.
public struct KafkaProducerConfiguration: Sendable, Equatable {
    public enum Compression: String, Sendable { case none, gzip, snappy, lz4, zstd }

    public var client: KafkaClientConfiguration
    /// `enable.idempotence`; implies `acks=all`.
    public var idempotent: Bool
    /// How long a message may wait in the local queue to be batched with others.
    public var linger: Duration
    /// Total time librdkafka may spend delivering one message, retries included; after it
    /// the delivery fails with `_MSG_TIMED_OUT`.
    public var deliveryTimeout: Duration
    public var compression: Compression
    /// Raw librdkafka properties, applied last (after `client.properties`).
    public var properties: [String: String]

    /// - Parameters:
    ///   - client: the shared connection settings.
    ///   - idempotent: exactly-once per partition for retries (default true).
    public init(
        client: KafkaClientConfiguration,
        idempotent: Bool = true,
        linger: Duration = .milliseconds(5),
        deliveryTimeout: Duration = .seconds(120),
        compression: Compression = .lz4,
        properties: [String: String] = [:]
    ) {
        self.client = client
        self.idempotent = idempotent
        self.linger = linger
        self.deliveryTimeout = deliveryTimeout
        self.compression = compression
        self.properties = properties
    }

    func validate() throws(KafkaError) {
        try client.validate()
        guard deliveryTimeout > .zero, linger >= .zero else {
            throw KafkaError(
                code: .configuration,
                message: "deliveryTimeout must be positive and linger not negative"
            )
        }
    }

    var librdkafkaProperties: [String: String] {
        var result = client.librdkafkaProperties
        result.merge([
            "enable.idempotence": idempotent ? "true" : "false",
            "linger.ms": String(linger.milliseconds),
            "message.timeout.ms": String(deliveryTimeout.milliseconds),
            "compression.codec": compression.rawValue,
        ]) { _, new in new }
        if idempotent { result["acks"] = "all" }
        result.merge(client.properties) { _, new in new }
        result.merge(properties) { _, new in new }
        return result
    }
}
