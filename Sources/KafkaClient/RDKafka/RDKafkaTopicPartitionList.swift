import CRdKafka

/// Owns an `rd_kafka_topic_partition_list_t`, destroyed in `deinit`.
final class RDKafkaTopicPartitionList {
    let pointer: UnsafeMutablePointer<rd_kafka_topic_partition_list_t>

    init(capacity: Int = 1) {
        pointer = rd_kafka_topic_partition_list_new(Int32(max(capacity, 1)))
    }

    convenience init(_ partitions: [KafkaTopicPartition]) {
        self.init(capacity: partitions.count)
        for tp in partitions { rd_kafka_topic_partition_list_add(pointer, tp.topic, tp.partition) }
    }

    convenience init(_ offsets: [KafkaTopicPartitionOffset]) {
        self.init(capacity: offsets.count)
        for tpo in offsets {
            let element = rd_kafka_topic_partition_list_add(pointer, tpo.topic, tpo.partition)!
            element.pointee.offset = tpo.offset
        }
    }

    deinit { rd_kafka_topic_partition_list_destroy(pointer) }

    /// The partitions with their offsets and per-partition errors, read from a list this
    /// object does not own (e.g. one handed to a callback).
    static func elements(
        of list: UnsafePointer<rd_kafka_topic_partition_list_t>?
    ) -> [(KafkaTopicPartitionOffset, rd_kafka_resp_err_t)] {
        guard let list, let elems = list.pointee.elems else { return [] }
        return (0..<Int(list.pointee.cnt)).map { index in
            let element = elems[index]
            return (
                KafkaTopicPartitionOffset(
                    topic: String(cString: element.topic),
                    partition: element.partition,
                    offset: element.offset
                ),
                element.err
            )
        }
    }

    var elements: [(KafkaTopicPartitionOffset, rd_kafka_resp_err_t)] {
        Self.elements(of: pointer)
    }

    /// The first per-partition error, if any.
    func firstError(context: String) -> KafkaError? {
        guard let (tpo, err) = elements.first(where: { $0.1 != RD_KAFKA_RESP_ERR_NO_ERROR }) else {
            return nil
        }
        return .rdKafka(err, context: "\(context) \(tpo.topicPartition)")
    }
}
