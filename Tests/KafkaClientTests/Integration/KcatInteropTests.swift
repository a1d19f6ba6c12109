import Foundation
import KafkaClient
import Testing

/// Interoperability with an independent Kafka client (kcat, Debian's package).
@Suite("Integration: interop with kcat")
struct KcatInteropTests {
    struct KcatRecord: Decodable {
        let partition: Int32
        let offset: Int64
        let key: String?
        let payload: String?
        let headers: [String]?
    }

    @Test("messages produced by Sluice are read by kcat with identical key, value and headers")
    func sluiceToKcat() async throws {
        let topic = uniqueTopic("it-to-kcat")
        try await TestBroker.createTopic(topic, partitions: 1)
        let producer = try TestBroker.producer()
        let sent = (0..<3).map { index in
            KafkaProducerMessage(
                topic: topic,
                key: Array("客户-\(index)".utf8),
                value: Array("{\"request_id\":\"r\(index)\",\"prompt\":\"我的卡丢了 💳 #\(index)\"}".utf8),
                headers: [KafkaHeader(name: "correlation-id", string: "c-\(index)"), KafkaHeader(name: "reply-to", string: "answers")]
            )
        }
        for message in sent { try await producer.send(message) }
        try await producer.close()

        let output = try await runKcat(["-C", "-b", try TestBroker.bootstrapServers, "-t", topic, "-o", "beginning", "-c", "3", "-e", "-J", "-q"])
        let records = try output.split(separator: "\n").map { try JSONDecoder().decode(KcatRecord.self, from: Data($0.utf8)) }
        #expect(records.count == 3)
        for (record, message) in zip(records, sent) {
            #expect(record.key == String(decoding: message.key!, as: UTF8.self))
            #expect(record.payload == String(decoding: message.value, as: UTF8.self))
            #expect(record.headers == message.headers.flatMap { [$0.name, $0.stringValue!] })
        }
    }

    @Test("messages produced by kcat are read by Sluice with identical key, value and headers")
    func kcatToSluice() async throws {
        let topic = uniqueTopic("it-from-kcat")
        try await TestBroker.createTopic(topic, partitions: 1)
        let brokers = try TestBroker.bootstrapServers
        for index in 0..<3 {
            _ = try await runKcat(
                ["-P", "-b", brokers, "-t", topic, "-K", "|", "-H", "correlation-id=k-\(index)", "-H", "kafka_replyTopic=replies"],
                input: "conv-\(index)|{\"request_id\":\"k\(index)\",\"prompt\":\"转账限额是多少？\"}\n"
            )
        }
        let consumer = try TestBroker.consumer(group: uniqueTopic("g"))
        try consumer.subscribe(topics: [topic])
        let received = try await withDeadline(60, "kcat's 3 messages") { try await collect(3, from: consumer) }
        for (index, message) in received.enumerated() {
            #expect(message.key == Array("conv-\(index)".utf8))
            #expect(String(decoding: message.value, as: UTF8.self) == "{\"request_id\":\"k\(index)\",\"prompt\":\"转账限额是多少？\"}")
            #expect(message.headers == [
                KafkaHeader(name: "correlation-id", string: "k-\(index)"),
                KafkaHeader(name: "kafka_replyTopic", string: "replies"),
            ])
        }
        try await consumer.close()
    }

    /// Runs kcat to completion off the cooperative pool and returns its standard output.
    private func runKcat(_ arguments: [String], input: String? = nil) async throws -> String {
        try await withDeadline(60, "kcat \(arguments.first ?? "")") {
            try await withCheckedThrowingContinuation { continuation in
                DispatchQueue.global().async {
                    continuation.resume(with: Result { try Self.runProcess("/usr/bin/kcat", arguments, input: input) })
                }
            }
        }
    }

    private static func runProcess(_ path: String, _ arguments: [String], input: String?) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        let stdout = Pipe()
        let stdin = Pipe()
        process.standardOutput = stdout
        process.standardInput = stdin
        try process.run()
        if let input { stdin.fileHandleForWriting.write(Data(input.utf8)) }
        try stdin.fileHandleForWriting.close()
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw KafkaError(code: .underlying, message: "kcat \(arguments) exited with \(process.terminationStatus)")
        }
        return String(decoding: data, as: UTF8.self)
    }
}
