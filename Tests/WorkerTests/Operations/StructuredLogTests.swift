import Foundation
import KafkaClient
import Testing
@testable import Worker

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

/// W3C trace context: a request's `traceparent` is continued on everything published for it.
@Suite("Integration: trace context (real broker)", .serialized)
struct TraceContextTests {
    static let traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
    static let parent = "00-\(traceID)-00f067aa0ba902b7-01"

    @Test("a request's traceparent continues on its reply (same trace, new span), in its audit row and its log lines; a rejected one on its error reply and dead letter")
    func continued() async throws {
        let harness = try await WorkerHarness(model: "echo", partitions: 1)
        defer { harness.stopAll() }
        try await harness.startWorker("w1", extra: ["SLUICE_LOG_FORMAT": "json", "SLUICE_LOG_LEVEL": "debug"])
        let rejectedTrace = "0af7651916cd43dd8448eb211c80319c"
        try await harness.send([
            (key: "k", value: WorkerHarness.request("traced-1"), headers: [
                KafkaHeader(name: "traceparent", string: Self.parent), KafkaHeader(name: "tracestate", string: "congo=t61rcWkgMzE"),
            ]),
            (key: "k", value: Array("{not json".utf8), headers: [KafkaHeader(name: "traceparent", string: "00-\(rejectedTrace)-b7ad6b7169203331-01")]),
            (key: "k", value: WorkerHarness.request("untraced-1"), headers: [KafkaHeader(name: "traceparent", string: "00-zzzz-not-a-trace-01")]),
        ])
        let replies = try await harness.read(harness.repliesTopic, count: 3)
        func traceparent(_ message: KafkaConsumerMessage) -> String? { message.headers.last(named: "traceparent")?.stringValue }
        func requestID(_ message: KafkaConsumerMessage) -> String? {
            (try? JSONSerialization.jsonObject(with: Data(message.value)) as? [String: Any])?["request_id"] as? String
        }
        let traced = try #require(replies.first { requestID($0) == "traced-1" })
        let continued = try #require(traceparent(traced))
        #expect(continued.hasPrefix("00-\(Self.traceID)-") && continued.hasSuffix("-01"), "\(continued)")
        #expect(!continued.contains("00f067aa0ba902b7"), "a new span id, not the producer's")
        #expect(traced.headers.last(named: "tracestate")?.stringValue == "congo=t61rcWkgMzE")
        let rejected = try #require(replies.first { requestID($0) == nil })
        #expect(traceparent(rejected)?.hasPrefix("00-\(rejectedTrace)-") == true)
        let dead = try await harness.read(harness.deadLettersTopic, count: 1)
        #expect(dead[0].headers.filter { $0.name == "traceparent" }.count == 1, "the original traceparent replaced, not duplicated")
        #expect(traceparent(dead[0])?.hasPrefix("00-\(rejectedTrace)-") == true)
        // A malformed traceparent is ignored (W3C): a new trace is started.
        let fresh = try #require(replies.first { requestID($0) == "untraced-1" }.flatMap(traceparent))
        #expect(fresh.count == 55 && !fresh.contains("zzzz"))

        let audit = try await harness.auditDatabase(rows: 3)
        #expect(try audit.record(requestID: "traced-1")?.traceID == Self.traceID)
        #expect(try audit.record(requestID: "untraced-1")?.traceID == String(fresh.dropFirst(3).prefix(32)))
        harness.signal("w1", SIGTERM)
        #expect(try await harness.waitForExit("w1") == 0)
        let objects = harness.log("w1").split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(objects.contains { $0["message"] as? String == "request finished" && $0["request_id"] as? String == "traced-1" && $0["trace_id"] as? String == Self.traceID })
        #expect(objects.contains { ($0["message"] as? String) == "request rejected" && $0["trace_id"] as? String == rejectedTrace })
    }

    @Test("trace parsing: continued with a new span and the flags; none or malformed starts a trace; an oversized tracestate is dropped")
    func parsing() throws {
        let trace = RequestTrace(headers: [KafkaHeader(name: "traceparent", string: Self.parent)])
        #expect(trace.continued && trace.traceID == Self.traceID)
        #expect(trace.context.spanID.description != "00f067aa0ba902b7" && trace.context.flags.contains(.sampled))
        #expect(RequestTrace(headers: [KafkaHeader(name: "traceparent", string: Self.parent)]).context.spanID != trace.context.spanID)
        for headers in [[], [KafkaHeader(name: "traceparent", string: "00-\(String(repeating: "0", count: 32))-00f067aa0ba902b7-01")],
                        [KafkaHeader(name: "traceparent", value: [0xFF, 0xFE])]] {
            let started = RequestTrace(headers: headers)
            #expect(!started.continued && started.traceID.count == 32 && started.traceID != String(repeating: "0", count: 32))
        }
        let long = RequestTrace(headers: [
            KafkaHeader(name: "traceparent", string: Self.parent), KafkaHeader(name: "tracestate", string: "a=" + String(repeating: "x", count: 600)),
        ])
        #expect(long.continued && long.headers.map(\.name) == ["traceparent"])
        let replaced = [KafkaHeader(name: "traceparent", string: "old"), KafkaHeader(name: "x", string: "y")].replacingTrace(with: trace)
        #expect(replaced.map(\.name) == ["x", "traceparent"] && replaced[1].stringValue == trace.context.traceParentHeaderValue)
    }
}
