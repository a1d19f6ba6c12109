import Foundation
import KafkaClient
import Testing

/// `log.format: json`: every line a worker writes is a JSON object a log shipper can index,
/// and no configured secret appears in it.
@Suite("Integration: structured logs (real broker)", .serialized)
struct StructuredLogTests {
    @Test("JSON log lines parse, carry time, level, logger, message and fields; a configured secret never appears")
    func jsonLines() async throws {
        let harness = try await WorkerHarness(model: "echo", partitions: 1)
        defer { harness.stopAll() }
        try await harness.startWorker("w1", extra: [
            "SLUICE_LOG_FORMAT": "json", "SLUICE_KAFKA_PROPERTIES": "ssl.key.password=logsecret-42,linger.ms=5",
        ])
        try await harness.send([(key: "k", value: WorkerHarness.request("log-1"), headers: [])])
        _ = try await harness.read(harness.repliesTopic, count: 1)
        // The same request id in a new record: answered as a duplicate, logged with its request id.
        try await harness.send([(key: "k", value: WorkerHarness.request("log-1"), headers: [])])
        try await harness.waitForLog("w1", containing: "duplicate request id")
        harness.signal("w1", SIGTERM)
        #expect(try await harness.waitForExit("w1") == 0)

        let lines = harness.log("w1").split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        #expect(lines.count >= 4)
        var objects: [[String: Any]] = []
        for line in lines {
            let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            #expect(object != nil, "not a JSON object: \(line)")
            if let object { objects.append(object) }
        }
        for object in objects {
            #expect(object["time"] is String && object["level"] is String && object["logger"] is String && object["message"] is String, "\(object)")
        }
        #expect(objects.contains { $0["message"] as? String == "worker started" && $0["worker"] as? String == "w1" })
        #expect(objects.contains { ($0["message"] as? String)?.contains("duplicate request id") == true && $0["request_id"] as? String == "log-1" })
        #expect(!harness.log("w1").contains("logsecret-42"))
    }
}
