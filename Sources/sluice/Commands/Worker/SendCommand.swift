import ArgumentParser
import Foundation
import KafkaClient
import Worker

struct SendCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send",
        abstract: "Post one request and print its reply."
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "The customer's question.") var prompt: String
    @Option(name: .customLong("request-id"), help: "Request id (default: a new UUID).") var requestID: String?
    @Option(name: .customLong("max-tokens")) var maxTokens: Int?
    @Option(help: "Conversation id (also the record key).") var conversation: String?
    @Option(help: "Seconds to wait for the reply.") var timeout: Double = 120
    @Flag(help: "Print the reply's JSON as received.") var json = false

    func run() async throws {
        let configuration = try common.loadConfiguration(overrides: common.overrides)
        let client = configuration.kafka.clientConfiguration
        let requestID = requestID ?? UUID().uuidString.lowercased()
        let correlation = UUID().uuidString.lowercased()
        // Listen first, from the current end of every reply partition, then send.
        let consumer = try await ReplyListener.fromEnd(of: configuration, groupID: "sluice-send-\(correlation)")
        let reply: KafkaConsumerMessage? = try await withThrowingTaskGroup(of: KafkaConsumerMessage?.self) { group in
            group.addTask {
                for try await message in consumer.messages where message.headers.last(named: "correlation-id")?.stringValue == correlation {
                    return message
                }
                return nil
            }
            group.addTask {
                let producer = try KafkaProducer(configuration: KafkaProducerConfiguration(client: client))
                var body: [String: Any] = ["request_id": requestID, "prompt": prompt]
                if let maxTokens { body["max_tokens"] = maxTokens }
                if let conversation { body["conversation_id"] = conversation }
                try await producer.send(KafkaProducerMessage(
                    topic: configuration.topics.requests[0], key: conversation.map { Array($0.utf8) },
                    value: Array(try JSONSerialization.data(withJSONObject: body)),
                    headers: [KafkaHeader(name: "correlation-id", string: correlation)]))
                try await producer.close()
                try await Task.sleep(for: .seconds(timeout))
                return nil
            }
            defer { group.cancelAll() }
            return try await group.next() ?? nil
        }
        try? await consumer.close()
        guard let reply else {
            FileHandle.standardError.write(Data("no reply to \(requestID) within \(Int(timeout)) s\n".utf8))
            throw ExitCode(2)
        }
        let text = String(decoding: reply.value, as: UTF8.self)
        if json {
            print(text)
            return
        }
        let object = (try? JSONSerialization.jsonObject(with: Data(reply.value))) as? [String: Any] ?? [:]
        let confidence = (object["confidence"] as? Double).map { String(format: "%.3f", $0) } ?? "-"
        let escalate = object["escalate"] as? Bool == true ? "yes (\(object["escalation_reason"] as? String ?? ""))" : "no"
        print("request:    \(requestID)")
        print("status:     \(object["status"] as? String ?? "?")")
        print("answer:     \((object["text"] as? String ?? (object["error"] as? [String: Any])?["message"] as? String ?? "").trimmingCharacters(in: .whitespacesAndNewlines))")
        print("confidence: \(confidence)   escalate: \(escalate)   worker: \(object["worker"] as? String ?? "?")")
        if let knowledge = object["knowledge"] as? [String: Any] {
            let passages = (knowledge["passages"] as? [String]) ?? []
            print("grounding:  \(knowledge["version"] as? String ?? "?"), passages: \(passages.isEmpty ? "none" : passages.joined(separator: ", "))")
        }
    }
}
