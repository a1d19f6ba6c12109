import CRdKafka

extension KafkaProducer {
    /// Puts the producer into librdkafka's fatal state, as an idempotent producer's
    /// unrecoverable error would (`rd_kafka_test_fatal_error`): every later send fails and
    /// ``fatalError`` reports `reason`. For fault-injection tests only.
    public func raiseFatalErrorForTesting(reason: String) {
        client.raiseFatalErrorForTesting(reason: reason)
    }
}

extension RDKafkaClient {
    func raiseFatalErrorForTesting(reason: String) {
        _ = rd_kafka_test_fatal_error(handle, RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER, reason)
    }
}
