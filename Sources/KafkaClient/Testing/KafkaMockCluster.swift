import CRdKafka
import Logging

/// librdkafka's in-process mock Kafka cluster, for fast tests and fault injection.
///
/// Owns a private librdkafka handle (which owns the mock cluster's threads and sockets) and
/// the mock cluster itself; both are destroyed in `deinit`, cluster first.
/// Not a substitute for a real broker: the mock skips parts of the protocol.
public final class KafkaMockCluster: @unchecked Sendable {
    /// Kafka protocol request types whose responses can be made to fail.
    public struct APIKey: Sendable, Hashable {
        public let rawValue: Int16
        public init(rawValue: Int16) { self.rawValue = rawValue }
        public static let produce = APIKey(rawValue: 0)
        public static let fetch = APIKey(rawValue: 1)
        public static let metadata = APIKey(rawValue: 3)
        public static let offsetCommit = APIKey(rawValue: 8)
        public static let offsetFetch = APIKey(rawValue: 9)
        public static let findCoordinator = APIKey(rawValue: 10)
        public static let joinGroup = APIKey(rawValue: 11)
        public static let heartbeat = APIKey(rawValue: 12)
        public static let syncGroup = APIKey(rawValue: 14)
        public static let createTopics = APIKey(rawValue: 19)
    }

    /// Broker error codes to inject (Kafka protocol error codes).
    public struct BrokerError: Sendable, Hashable {
        public let rawValue: Int32
        public init(rawValue: Int32) { self.rawValue = rawValue }
        public static let notLeaderForPartition = BrokerError(rawValue: RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION.rawValue)
        public static let requestTimedOut = BrokerError(rawValue: RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT.rawValue)
        public static let notEnoughReplicas = BrokerError(rawValue: RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS.rawValue)
        public static let coordinatorNotAvailable = BrokerError(rawValue: RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE.rawValue)
        public static let topicAuthorizationFailed = BrokerError(rawValue: RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED.rawValue)
        public static let messageTooLarge = BrokerError(rawValue: RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE.rawValue)
        public static let offsetMetadataTooLarge = BrokerError(rawValue: RD_KAFKA_RESP_ERR_OFFSET_METADATA_TOO_LARGE.rawValue)
    }

    private let owner: OpaquePointer
    private let cluster: OpaquePointer

    /// The `host:port` list clients use to reach the mock brokers.
    public let bootstrapServers: String

    /// Starts a mock cluster of `brokers` brokers on loopback ports.
    public init(brokers: Int32 = 3) throws {
        try Librdkafka.checkVersion()
        let conf = rd_kafka_conf_new()!
        var errorBuffer = [CChar](repeating: 0, count: 512)
        _ = rd_kafka_conf_set(conf, "log_level", "3", &errorBuffer, errorBuffer.count)
        guard let owner = rd_kafka_new(RD_KAFKA_PRODUCER, conf, &errorBuffer, errorBuffer.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(code: .configuration, message: "mock cluster owner: \(String(cBuffer: errorBuffer))")
        }
        guard let cluster = rd_kafka_mock_cluster_new(owner, brokers) else {
            rd_kafka_destroy(owner)
            throw KafkaError(code: .underlying, message: "rd_kafka_mock_cluster_new failed")
        }
        self.owner = owner
        self.cluster = cluster
        self.bootstrapServers = String(cString: rd_kafka_mock_cluster_bootstraps(cluster))
    }

    deinit {
        rd_kafka_mock_cluster_destroy(cluster)
        rd_kafka_destroy(owner)
    }

    /// Creates a topic on the mock cluster.
    public func createTopic(_ name: String, partitions: Int32, replicationFactor: Int32 = 1) throws {
        let err = rd_kafka_mock_topic_create(cluster, name, partitions, replicationFactor)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError.rdKafka(err, context: "mock topic \(name)") }
    }

    /// Makes the next `errors.count` requests of type `apiKey` fail, one error each, in order.
    public func pushRequestErrors(_ apiKey: APIKey, _ errors: [BrokerError]) {
        var codes = errors.map { rd_kafka_resp_err_t(rawValue: $0.rawValue) }
        rd_kafka_mock_push_request_errors_array(cluster, apiKey.rawValue, codes.count, &codes)
    }

    /// Takes a broker down (connections refused) or brings it back.
    public func setBroker(_ id: Int32, up: Bool) throws {
        let err = up ? rd_kafka_mock_broker_set_up(cluster, id) : rd_kafka_mock_broker_set_down(cluster, id)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw KafkaError.rdKafka(err, context: "mock broker \(id)") }
    }
}
