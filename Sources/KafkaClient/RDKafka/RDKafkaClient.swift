import CRdKafka
import Foundation
import Logging

/// Owns one librdkafka handle (`rd_kafka_t`) and is the only type that calls into it.
///
/// Ownership: `rd_kafka_new` takes the configuration object only on success (we destroy it
/// on failure); the handle is destroyed in `deinit`, after consumers were closed.
/// librdkafka's API is thread-safe; blocking calls (polls, sync commits, admin requests)
/// are made by callers from dedicated threads, never from Swift's cooperative pool.
final class RDKafkaClient: @unchecked Sendable {
    enum Kind {
        case producer, consumer

        var cType: rd_kafka_type_t { self == .producer ? RD_KAFKA_PRODUCER : RD_KAFKA_CONSUMER }
    }

    let handle: OpaquePointer
    let kind: Kind
    /// Kept alive here because librdkafka holds an unretained pointer to it.
    let callbacks: RDKafkaCallbacks

    /// - Parameters:
    ///   - kind: producer (also used for admin requests) or consumer.
    ///   - properties: librdkafka configuration properties.
    ///   - callbacks: installed on the configuration before the handle is created; set
    ///     every closure on it before calling this.
    init(kind: Kind, properties: [String: String], callbacks: RDKafkaCallbacks) throws(KafkaError) {
        try Librdkafka.checkVersion()
        let conf = rd_kafka_conf_new()!
        var errorBuffer = [CChar](repeating: 0, count: 512)
        for (key, value) in properties.sorted(by: { $0.key < $1.key }) {
            let result = rd_kafka_conf_set(conf, key, value, &errorBuffer, errorBuffer.count)
            guard result == RD_KAFKA_CONF_OK else {
                rd_kafka_conf_destroy(conf)
                throw KafkaError(
                    code: .configuration,
                    message: "librdkafka property \(key)=\(Self.redacted(key, value)): \(String(cBuffer: errorBuffer))"
                )
            }
        }
        callbacks.install(on: conf, consumer: kind == .consumer)
        guard let handle = rd_kafka_new(kind.cType, conf, &errorBuffer, errorBuffer.count) else {
            rd_kafka_conf_destroy(conf)
            throw KafkaError(code: .configuration, message: String(cBuffer: errorBuffer))
        }
        self.handle = handle
        self.kind = kind
        self.callbacks = callbacks
        if kind == .consumer {
            // Serve rebalances, errors and messages from the one consumer queue.
            rd_kafka_poll_set_consumer(handle)
        }
    }

    deinit {
        rd_kafka_destroy(handle)
    }

    private static func redacted(_ key: String, _ value: String) -> String { SecretProperties.redacted(key, value) }

    // MARK: - Shared

    /// Serves queued callbacks (delivery reports, errors) for up to `timeoutMs`.
    @discardableResult
    func poll(timeoutMs: Int32) -> Int32 { rd_kafka_poll(handle, timeoutMs) }

    /// The fatal error that made this instance unusable, if any.
    func fatalError() -> KafkaError? {
        var buffer = [CChar](repeating: 0, count: 512)
        let err = rd_kafka_fatal_error(handle, &buffer, buffer.count)
        guard err != RD_KAFKA_RESP_ERR_NO_ERROR else { return nil }
        return .rdKafka(err, context: String(cBuffer: buffer), isFatal: true)
    }

    /// Cluster metadata (blocking, up to `timeoutMs`).
    func metadata(topic: String?, timeoutMs: Int32) throws(KafkaError) -> KafkaClusterMetadata {
        var pointer: UnsafePointer<rd_kafka_metadata_t>?
        let err: rd_kafka_resp_err_t
        if let topic {
            let rkt = rd_kafka_topic_new(handle, topic, nil)
            defer { rd_kafka_topic_destroy(rkt) }
            err = rd_kafka_metadata(handle, 0, rkt, &pointer, timeoutMs)
        } else {
            err = rd_kafka_metadata(handle, 1, nil, &pointer, timeoutMs)
        }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR, let pointer else {
            throw .rdKafka(err, context: "metadata request")
        }
        defer { rd_kafka_metadata_destroy(pointer) }
        let md = pointer.pointee
        let brokers = (0..<Int(md.broker_cnt)).map { index in
            let b = md.brokers[index]
            return KafkaClusterMetadata.Broker(id: b.id, host: String(cString: b.host), port: Int(b.port))
        }
        let topics = (0..<Int(md.topic_cnt)).map { index in
            let t = md.topics[index]
            let partitions = (0..<Int(t.partition_cnt)).map { p in
                let part = t.partitions[p]
                return KafkaClusterMetadata.Partition(
                    id: part.id,
                    leader: part.leader,
                    replicas: (0..<Int(part.replica_cnt)).map { part.replicas[$0] },
                    error: part.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : .rdKafka(part.err)
                )
            }
            return KafkaClusterMetadata.Topic(
                name: String(cString: t.topic),
                partitions: partitions.sorted { $0.id < $1.id },
                error: t.err == RD_KAFKA_RESP_ERR_NO_ERROR ? nil : .rdKafka(t.err)
            )
        }
        return KafkaClusterMetadata(brokers: brokers, topics: topics.sorted { $0.name < $1.name })
    }

    // MARK: - Producer

    /// Enqueues one message (copying key, value and headers). The delivery report arrives
    /// later through `callbacks.onDelivery` with `opaque`.
    func produce(_ message: KafkaProducerMessage, opaque: UnsafeMutableRawPointer?) throws(KafkaError) {
        let headers = rd_kafka_headers_new(message.headers.count)!
        for header in message.headers {
            if let value = header.value {
                _ = value.withUnsafeBytes { rd_kafka_header_add(headers, header.name, -1, $0.baseAddress, $0.count) }
            } else {
                _ = rd_kafka_header_add(headers, header.name, -1, nil, 0)
            }
        }
        let error: OpaquePointer? = message.topic.withCString { topic in
            message.value.withUnsafeBytes { value in
                withOptionalBytes(message.key) { key in
                    var fields = [rd_kafka_vu_t](repeating: rd_kafka_vu_t(), count: 7)
                    fields[0].vtype = RD_KAFKA_VTYPE_TOPIC
                    fields[0].u.cstr = topic
                    fields[1].vtype = RD_KAFKA_VTYPE_PARTITION
                    fields[1].u.i32 = message.partition ?? -1  // RD_KAFKA_PARTITION_UA
                    fields[2].vtype = RD_KAFKA_VTYPE_VALUE
                    fields[2].u.mem.ptr = UnsafeMutableRawPointer(mutating: value.baseAddress)
                    fields[2].u.mem.size = value.count
                    fields[3].vtype = RD_KAFKA_VTYPE_KEY
                    fields[3].u.mem.ptr = UnsafeMutableRawPointer(mutating: key?.baseAddress)
                    fields[3].u.mem.size = key?.count ?? 0
                    fields[4].vtype = RD_KAFKA_VTYPE_MSGFLAGS
                    fields[4].u.i = RD_KAFKA_MSG_F_COPY
                    fields[5].vtype = RD_KAFKA_VTYPE_HEADERS
                    fields[5].u.headers = headers
                    fields[6].vtype = RD_KAFKA_VTYPE_OPAQUE
                    fields[6].u.ptr = opaque
                    return rd_kafka_produceva(handle, &fields, fields.count)
                }
            }
        }
        if let error {
            // On failure the headers were not taken over.
            rd_kafka_headers_destroy(headers)
            throw .consuming(error, context: "produce to \(message.topic)")
        }
    }

    /// Waits until every queued message was delivered or failed (blocking).
    func flush(timeoutMs: Int32) throws(KafkaError) {
        let err = rd_kafka_flush(handle, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw .rdKafka(err, code: .timedOut, context: "flush: \(rd_kafka_outq_len(handle)) messages still queued")
        }
    }

    /// Messages and requests still waiting to be delivered.
    var outQueueLength: Int32 { rd_kafka_outq_len(handle) }

    // MARK: - Consumer

    enum PollResult {
        case message(KafkaConsumerMessage)
        case error(KafkaError)
        case nothing
    }

    /// Polls the consumer queue once (blocking up to `timeoutMs`); serves rebalance
    /// callbacks on the calling thread.
    func consumerPoll(timeoutMs: Int32) -> PollResult {
        guard let pointer = rd_kafka_consumer_poll(handle, timeoutMs) else { return .nothing }
        defer { rd_kafka_message_destroy(pointer) }
        let m = pointer.pointee
        let topic = m.rkt.map { String(cString: rd_kafka_topic_name($0)) } ?? ""
        guard m.err == RD_KAFKA_RESP_ERR_NO_ERROR else {
            let context = topic.isEmpty ? "consume" : "consume \(topic)[\(m.partition)]"
            return .error(.rdKafka(m.err, context: context))
        }
        var headers: [KafkaHeader] = []
        var hdrs: OpaquePointer?
        if rd_kafka_message_headers(pointer, &hdrs) == RD_KAFKA_RESP_ERR_NO_ERROR, let hdrs {
            var index = 0
            var name: UnsafePointer<CChar>?
            var value: UnsafeRawPointer?
            var size = 0
            while rd_kafka_header_get_all(hdrs, index, &name, &value, &size) == RD_KAFKA_RESP_ERR_NO_ERROR {
                headers.append(
                    KafkaHeader(
                        name: name.map { String(cString: $0) } ?? "",
                        value: value.map { Array(UnsafeRawBufferPointer(start: $0, count: size)) }
                    )
                )
                index += 1
            }
        }
        var timestampType = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE
        let timestamp = rd_kafka_message_timestamp(pointer, &timestampType)
        return .message(
            KafkaConsumerMessage(
                topic: topic,
                partition: m.partition,
                offset: m.offset,
                key: m.key.map { Array(UnsafeRawBufferPointer(start: $0, count: m.key_len)) },
                value: m.payload.map { Array(UnsafeRawBufferPointer(start: $0, count: m.len)) } ?? [],
                headers: headers,
                timestamp: timestamp >= 0 ? Date(timeIntervalSince1970: Double(timestamp) / 1000) : nil
            )
        )
    }

    func subscribe(topics: [String]) throws(KafkaError) {
        let list = RDKafkaTopicPartitionList(topics.map { KafkaTopicPartition(topic: $0, partition: -1) })
        let err = rd_kafka_subscribe(handle, list.pointer)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw .rdKafka(err, context: "subscribe \(topics)") }
    }

    /// Reads `offsets` directly, without group membership (replaces any assignment).
    func assign(_ offsets: [KafkaTopicPartitionOffset]) throws(KafkaError) {
        let list = RDKafkaTopicPartitionList(offsets)
        let err = rd_kafka_assign(handle, list.pointer)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw .rdKafka(err, context: "assign") }
    }

    func pause(_ partitions: [KafkaTopicPartition]) throws(KafkaError) {
        let list = RDKafkaTopicPartitionList(partitions)
        let err = rd_kafka_pause_partitions(handle, list.pointer)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw .rdKafka(err, context: "pause") }
        if let error = list.firstError(context: "pause") { throw error }
    }

    func resume(_ partitions: [KafkaTopicPartition]) throws(KafkaError) {
        let list = RDKafkaTopicPartitionList(partitions)
        let err = rd_kafka_resume_partitions(handle, list.pointer)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw .rdKafka(err, context: "resume") }
        if let error = list.firstError(context: "resume") { throw error }
    }

    /// Stores offsets (the next offset to read) for the next commit.
    func storeOffsets(_ offsets: [KafkaTopicPartitionOffset]) throws(KafkaError) {
        let list = RDKafkaTopicPartitionList(offsets)
        let err = rd_kafka_offsets_store(handle, list.pointer)
        if let error = list.firstError(context: "store offset") { throw error }
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw .rdKafka(err, context: "store offsets") }
    }

    /// Commits `offsets`, or every stored offset when nil. Sync commits block until the
    /// broker answered; async ones report through `callbacks.onOffsetCommit`.
    func commit(_ offsets: [KafkaTopicPartitionOffset]?, async: Bool) throws(KafkaError) {
        let list = offsets.map { RDKafkaTopicPartitionList($0) }
        let err = rd_kafka_commit(handle, list?.pointer, async ? 1 : 0)
        // _NO_OFFSET: nothing was stored since the last commit — nothing to do.
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR || err == RD_KAFKA_RESP_ERR__NO_OFFSET else {
            throw .rdKafka(err, context: "commit")
        }
        if !async, let error = list?.firstError(context: "commit") { throw error }
    }

    /// The group's committed offsets for `partitions` (blocking).
    func committed(_ partitions: [KafkaTopicPartition], timeoutMs: Int32) throws(KafkaError) -> [KafkaTopicPartitionOffset] {
        let list = RDKafkaTopicPartitionList(partitions)
        let err = rd_kafka_committed(handle, list.pointer, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw .rdKafka(err, context: "committed offsets") }
        if let error = list.firstError(context: "committed offset") { throw error }
        return list.elements.map(\.0)
    }

    /// The application's position in each partition: the offset after the last message
    /// consumed, past any transaction markers the consumer skipped (-1001 where unknown).
    func positions(_ partitions: [KafkaTopicPartition]) throws(KafkaError) -> [KafkaTopicPartitionOffset] {
        let list = RDKafkaTopicPartitionList(partitions)
        let err = rd_kafka_position(handle, list.pointer)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw .rdKafka(err, context: "positions") }
        return list.elements.map(\.0)
    }

    /// Low and high watermarks of a partition, asked of the broker (blocking).
    func watermarks(_ partition: KafkaTopicPartition, timeoutMs: Int32) throws(KafkaError) -> (low: Int64, high: Int64) {
        var low: Int64 = -1
        var high: Int64 = -1
        let err = rd_kafka_query_watermark_offsets(handle, partition.topic, partition.partition, &low, &high, timeoutMs)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw .rdKafka(err, context: "watermarks \(partition)") }
        return (low, high)
    }

    /// The partitions currently assigned to this member.
    func assignment() throws(KafkaError) -> [KafkaTopicPartition] {
        var pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?
        let err = rd_kafka_assignment(handle, &pointer)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw .rdKafka(err, context: "assignment") }
        defer { if let pointer { rd_kafka_topic_partition_list_destroy(pointer) } }
        return RDKafkaTopicPartitionList.elements(of: pointer).map(\.0.topicPartition)
    }

    /// Leaves the group (serving the final revocation on this thread) and commits stored
    /// offsets when auto-commit is on. Blocking.
    func consumerClose() throws(KafkaError) {
        let err = rd_kafka_consumer_close(handle)
        guard err == RD_KAFKA_RESP_ERR_NO_ERROR else { throw .rdKafka(err, context: "consumer close") }
    }

    /// Runs the rebalance protocol librdkafka chose (incremental for cooperative-sticky,
    /// eager otherwise), telling the application before unassigning.
    static func handleRebalance(
        _ rk: OpaquePointer,
        _ err: rd_kafka_resp_err_t,
        _ partitions: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>?,
        callbacks: RDKafkaCallbacks?
    ) {
        let cooperative = String(cString: rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE"
        let list = RDKafkaTopicPartitionList.elements(of: partitions).map(\.0.topicPartition)
        switch err {
        case RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS:
            if cooperative {
                if let error = rd_kafka_incremental_assign(rk, partitions) {
                    callbacks?.onError?(.consuming(error, context: "incremental assign"))
                }
            } else {
                _ = rd_kafka_assign(rk, partitions)
            }
            callbacks?.onRebalance?(.assigned(list))
        case RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS:
            let lost = rd_kafka_assignment_lost(rk) != 0
            callbacks?.onRebalance?(.revoked(list, lost: lost))
            if cooperative {
                if let error = rd_kafka_incremental_unassign(rk, partitions) {
                    callbacks?.onError?(.consuming(error, context: "incremental unassign"))
                }
            } else {
                _ = rd_kafka_assign(rk, nil)
            }
        default:
            callbacks?.onError?(.rdKafka(err, context: "rebalance"))
            _ = rd_kafka_assign(rk, nil)
        }
    }

    // MARK: - Admin

    /// Creates topics and returns each topic's outcome (blocking up to `timeoutMs`).
    func createTopics(_ topics: [KafkaTopicSpec], timeoutMs: Int32) throws(KafkaError) -> [String: KafkaError?] {
        var errorBuffer = [CChar](repeating: 0, count: 512)
        var newTopics: [OpaquePointer?] = []
        defer { for topic in newTopics { rd_kafka_NewTopic_destroy(topic) } }
        for spec in topics {
            guard let newTopic = rd_kafka_NewTopic_new(
                spec.name, spec.partitions, Int32(spec.replicationFactor), &errorBuffer, errorBuffer.count)
            else {
                throw KafkaError(code: .topicCreation, message: "\(spec.name): \(String(cBuffer: errorBuffer))")
            }
            newTopics.append(newTopic)
            for (key, value) in spec.config.sorted(by: { $0.key < $1.key }) {
                let err = rd_kafka_NewTopic_set_config(newTopic, key, value)
                guard err == RD_KAFKA_RESP_ERR_NO_ERROR else {
                    throw .rdKafka(err, code: .topicCreation, context: "\(spec.name) config \(key)")
                }
            }
        }
        let options = rd_kafka_AdminOptions_new(handle, RD_KAFKA_ADMIN_OP_CREATETOPICS)
        defer { rd_kafka_AdminOptions_destroy(options) }
        _ = rd_kafka_AdminOptions_set_request_timeout(options, timeoutMs, &errorBuffer, errorBuffer.count)
        _ = rd_kafka_AdminOptions_set_operation_timeout(options, timeoutMs, &errorBuffer, errorBuffer.count)
        let queue = rd_kafka_queue_new(handle)
        defer { rd_kafka_queue_destroy(queue) }
        rd_kafka_CreateTopics(handle, &newTopics, newTopics.count, options, queue)
        guard let event = rd_kafka_queue_poll(queue, timeoutMs + 5000) else {
            throw KafkaError(code: .timedOut, message: "no answer to CreateTopics within \(timeoutMs) ms")
        }
        defer { rd_kafka_event_destroy(event) }
        let eventErr = rd_kafka_event_error(event)
        guard eventErr == RD_KAFKA_RESP_ERR_NO_ERROR else {
            throw .rdKafka(eventErr, code: .topicCreation, context: "CreateTopics")
        }
        let result = rd_kafka_event_CreateTopics_result(event)
        var count = 0
        guard let results = rd_kafka_CreateTopics_result_topics(result, &count) else { return [:] }
        var outcome: [String: KafkaError?] = [:]
        for index in 0..<count {
            let topicResult = results[index]
            let name = String(cString: rd_kafka_topic_result_name(topicResult))
            let err = rd_kafka_topic_result_error(topicResult)
            if err == RD_KAFKA_RESP_ERR_NO_ERROR {
                outcome[name] = .some(nil)
            } else {
                let text = rd_kafka_topic_result_error_string(topicResult).map { String(cString: $0) }
                outcome[name] = .rdKafka(err, code: .topicCreation, context: "\(name)\(text.map { ": \($0)" } ?? "")")
            }
        }
        return outcome
    }
}

/// Runs `body` with the bytes of `array`, or with nil when `array` is nil.
private func withOptionalBytes<R>(_ array: [UInt8]?, _ body: (UnsafeRawBufferPointer?) -> R) -> R {
    guard let array else { return body(nil) }
    return array.withUnsafeBytes { body($0) }
}
