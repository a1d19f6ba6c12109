import CRdKafka

/// The one error type of the Kafka layer.
///
/// `code` says what went wrong in Sluice's terms and is extensible (new codes do not break
/// callers that switch over the known ones). When librdkafka raised the error,
/// `rdKafkaCode` carries its `rd_kafka_resp_err_t` value and `rdKafkaName` its symbolic name.
public struct KafkaError: Error, Sendable, CustomStringConvertible {
    /// What kind of failure this is.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// A configuration value was rejected (by Sluice's validation or by librdkafka).
        public static let configuration = Code("configuration")
        /// The linked librdkafka is older than Sluice supports.
        public static let unsupportedLibrdkafka = Code("unsupportedLibrdkafka")
        /// librdkafka reported an error; see `rdKafkaCode`.
        public static let underlying = Code("underlying")
        /// A message could not be delivered; see `rdKafkaCode`.
        public static let delivery = Code("delivery")
        /// Creating a topic failed.
        public static let topicCreation = Code("topicCreation")
        /// The client was already closed.
        public static let closed = Code("closed")
        /// An operation did not finish in time.
        public static let timedOut = Code("timedOut")
    }

    public let code: Code
    /// The librdkafka error code (`rd_kafka_resp_err_t`), when librdkafka raised it.
    public let rdKafkaCode: Int32?
    public let message: String
    /// True when librdkafka marked the error fatal: the client instance cannot be used again.
    public let isFatal: Bool
    public let file: String
    public let line: UInt

    /// True when trying the same operation again may succeed (transient broker or network
    /// trouble, a full local queue, a leader election).
    public var isRetriable: Bool {
        if isFatal { return false }
        if code == .timedOut { return true }
        guard let rdKafkaCode else { return false }
        return Self.retriableCodes.contains(rdKafkaCode)
    }

    /// True when librdkafka's local produce queue is full (wait for deliveries, then retry).
    public var isLocalQueueFull: Bool { rdKafkaCode == RD_KAFKA_RESP_ERR__QUEUE_FULL.rawValue }

    /// librdkafka's symbolic name of `rdKafkaCode`, e.g. `NOT_LEADER_FOR_PARTITION`.
    public var rdKafkaName: String? {
        rdKafkaCode.map { String(cString: rd_kafka_err2name(rd_kafka_resp_err_t($0))) }
    }

    public var description: String {
        var text = "KafkaError.\(code): \(message)"
        if let rdKafkaName { text += " [\(rdKafkaName)]" }
        if isFatal { text += " (fatal)" }
        return text
    }

    public init(
        code: Code,
        message: String,
        rdKafkaCode: Int32? = nil,
        isFatal: Bool = false,
        file: String = #fileID,
        line: UInt = #line
    ) {
        self.code = code
        self.message = message
        self.rdKafkaCode = rdKafkaCode
        self.isFatal = isFatal
        self.file = file
        self.line = line
    }

    /// An error for a librdkafka response code, with librdkafka's own text.
    static func rdKafka(
        _ err: rd_kafka_resp_err_t,
        code: Code = .underlying,
        context: String? = nil,
        isFatal: Bool = false,
        file: String = #fileID,
        line: UInt = #line
    ) -> KafkaError {
        let text = String(cString: rd_kafka_err2str(err))
        return KafkaError(
            code: code,
            message: context.map { "\($0): \(text)" } ?? text,
            rdKafkaCode: err.rawValue,
            isFatal: isFatal,
            file: file,
            line: line
        )
    }

    /// Consumes an `rd_kafka_error_t` (destroying it) and converts it.
    static func consuming(
        _ error: OpaquePointer,
        context: String? = nil,
        file: String = #fileID,
        line: UInt = #line
    ) -> KafkaError {
        defer { rd_kafka_error_destroy(error) }
        let text = String(cString: rd_kafka_error_string(error))
        return KafkaError(
            code: .underlying,
            message: context.map { "\($0): \(text)" } ?? text,
            rdKafkaCode: rd_kafka_error_code(error).rawValue,
            isFatal: rd_kafka_error_is_fatal(error) != 0,
            file: file,
            line: line
        )
    }

    private static let retriableCodes: Set<Int32> = Set(
        [
            RD_KAFKA_RESP_ERR__TRANSPORT, RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN,
            RD_KAFKA_RESP_ERR__TIMED_OUT, RD_KAFKA_RESP_ERR__MSG_TIMED_OUT,
            RD_KAFKA_RESP_ERR__QUEUE_FULL, RD_KAFKA_RESP_ERR__RESOLVE,
            RD_KAFKA_RESP_ERR__WAIT_COORD, RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE,
            RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE,
            RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT, RD_KAFKA_RESP_ERR_NETWORK_EXCEPTION,
            RD_KAFKA_RESP_ERR_COORDINATOR_LOAD_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE, RD_KAFKA_RESP_ERR_NOT_COORDINATOR,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS_AFTER_APPEND,
            RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR_REBALANCE_IN_PROGRESS,
            RD_KAFKA_RESP_ERR_KAFKA_STORAGE_ERROR, RD_KAFKA_RESP_ERR_FETCH_SESSION_ID_NOT_FOUND,
            RD_KAFKA_RESP_ERR_THROTTLING_QUOTA_EXCEEDED,
        ].map(\.rawValue)
    )
}
