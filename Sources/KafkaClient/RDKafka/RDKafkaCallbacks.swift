import CRdKafka
import Logging

/// What librdkafka tells the application through callbacks. One instance per client,
/// handed to librdkafka as the configuration's opaque pointer and kept alive by the
/// ``RDKafkaClient`` that owns the handle.
///
/// The closures are set once, before `rd_kafka_new`, and only read afterwards (from
/// librdkafka's threads and the poll thread), hence `@unchecked Sendable`.
final class RDKafkaCallbacks: @unchecked Sendable {
    enum Rebalance {
        case assigned([KafkaTopicPartition])
        /// `lost`: the partitions were taken away (session timeout) rather than handed back.
        case revoked([KafkaTopicPartition], lost: Bool)
    }

    let logger: Logger
    /// A message's delivery report; the pointer is the message's opaque.
    var onDelivery: (@Sendable (UnsafeMutableRawPointer?, Result<KafkaDeliveryReport, KafkaError>) -> Void)?
    /// Called on the poll thread; for a revocation, before the partitions are unassigned,
    /// so a handler that blocks holds the revocation until in-flight work is done.
    var onRebalance: (@Sendable (Rebalance) -> Void)?
    var onOffsetCommit: (@Sendable (Result<[KafkaTopicPartitionOffset], KafkaError>) -> Void)?
    /// Client-level errors (broker down, authentication, fatal errors).
    var onError: (@Sendable (KafkaError) -> Void)?

    init(logger: Logger) {
        self.logger = logger
    }

    static func from(_ opaque: UnsafeMutableRawPointer?) -> RDKafkaCallbacks? {
        opaque.map { Unmanaged<RDKafkaCallbacks>.fromOpaque($0).takeUnretainedValue() }
    }

    /// Installs the C trampolines on `conf` and points its opaque at `self`.
    func install(on conf: OpaquePointer, consumer: Bool) {
        rd_kafka_conf_set_opaque(conf, Unmanaged.passUnretained(self).toOpaque())
        rd_kafka_conf_set_log_cb(conf) { rk, level, facility, buffer in
            guard let callbacks = RDKafkaCallbacks.from(rd_kafka_opaque(rk)) else { return }
            let text = "\(facility.map { String(cString: $0) } ?? "?"): \(buffer.map { String(cString: $0) } ?? "")"
            callbacks.logger.log(level: Logger.Level(syslog: level), "\(text)")
        }
        rd_kafka_conf_set_error_cb(conf) { rk, err, reason, opaque in
            guard let callbacks = RDKafkaCallbacks.from(opaque) else { return }
            let fatal = err == RD_KAFKA_RESP_ERR__FATAL.rawValue
            var error = KafkaError.rdKafka(
                rd_kafka_resp_err_t(rawValue: err),
                context: reason.map { String(cString: $0) },
                isFatal: fatal
            )
            if fatal, let rk {
                var buffer = [CChar](repeating: 0, count: 512)
                let original = rd_kafka_fatal_error(rk, &buffer, buffer.count)
                error = .rdKafka(original, context: String(cBuffer: buffer), isFatal: true)
            }
            callbacks.onError?(error)
        }
        if !consumer { installDeliveryCallback(on: conf) }
        guard consumer else { return }
        rd_kafka_conf_set_offset_commit_cb(conf) { _, err, offsets, opaque in
            guard let callbacks = RDKafkaCallbacks.from(opaque) else { return }
            let elements = RDKafkaTopicPartitionList.elements(of: offsets)
            if err != RD_KAFKA_RESP_ERR_NO_ERROR, err != RD_KAFKA_RESP_ERR__NO_OFFSET {
                callbacks.onOffsetCommit?(.failure(.rdKafka(err, context: "offset commit")))
            } else if let (tpo, partitionErr) = elements.first(where: { $0.1 != RD_KAFKA_RESP_ERR_NO_ERROR }) {
                callbacks.onOffsetCommit?(
                    .failure(.rdKafka(partitionErr, context: "offset commit \(tpo.topicPartition)"))
                )
            } else {
                callbacks.onOffsetCommit?(.success(elements.map(\.0)))
            }
        }
        rd_kafka_conf_set_rebalance_cb(conf) { rk, err, partitions, opaque in
            guard let rk else { return }
            RDKafkaClient.handleRebalance(
                rk,
                err,
                partitions,
                callbacks: RDKafkaCallbacks.from(opaque)
            )
        }
    }

    /// Delivery reports (producers only; consumers would warn about the property).
    private func installDeliveryCallback(on conf: OpaquePointer) {
        rd_kafka_conf_set_dr_msg_cb(conf) { _, message, opaque in
            guard let callbacks = RDKafkaCallbacks.from(opaque), let message else { return }
            let m = message.pointee
            let result: Result<KafkaDeliveryReport, KafkaError>
            if m.err == RD_KAFKA_RESP_ERR_NO_ERROR {
                let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
                result = .success(KafkaDeliveryReport(topic: topic, partition: m.partition, offset: m.offset))
            } else {
                result = .failure(.rdKafka(m.err, code: .delivery, context: "delivery failed"))
            }
            callbacks.onDelivery?(m._private, result)
        }
    }
}

extension Logger.Level {
    /// Maps syslog levels (librdkafka's log levels) to swift-log levels.
    init(syslog level: Int32) {
        switch level {
        case ...3: self = .error
        case 4: self = .warning
        case 5: self = .notice
        case 6: self = .info
        default: self = .debug
        }
    }
}
