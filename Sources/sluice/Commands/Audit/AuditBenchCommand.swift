import ArgumentParser
import AuditLog
import Foundation
import Synchronization

struct AuditBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Measure append throughput (masking, hashing and chaining on) at several batch sizes."
    )

    @Option(help: "Database to append to (default: a new temporary file per batch size).") var db: String?
    @Option(help: "Rows to append per batch size.") var rows = 20_000
    @Option(help: "Comma-separated batch sizes.") var batch = "1,16,64"
    @Option(name: .customLong("worker-id"), help: "Worker id written into the rows.") var workerID = "bench"
    @Option(help: "synchronous mode: FULL or NORMAL.") var synchronous = "FULL"
    @Option(name: .customLong("in-flight"), help: "Batches appended at once (the worker keeps 2 in flight: one is masked and hashed while the other holds the write lock).")
    var inFlight = 2
    @Option(name: .customLong("mask-kinds"), help: "PII kinds to mask (comma-separated; empty: none).")
    var maskKinds = PIIKind.allCases.map(\.rawValue).joined(separator: ",")
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let sizes = batch.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }.filter { $0 > 0 }
        guard !sizes.isEmpty, rows > 0, inFlight > 0 else { throw ValidationError("--rows, --batch and --in-flight must be positive") }
        let keys = AuditKeys.generate()
        let configuration = AuditLogConfiguration(
            keys: try AuditKeys(pseudonymKey: keys.pseudonymKey, signingKey: keys.signingKey),
            masker: try PIIMasker(kinds: Set(maskKinds.split(separator: ",").compactMap { PIIKind(rawValue: String($0)) })),
            synchronousFull: synchronous.uppercased() == "FULL",
            busyTimeout: 60
        )
        var results: [String: Double] = [:]
        for size in sizes {
            let path = db ?? FileManager.default.temporaryDirectory.appendingPathComponent("sluice-bench-\(UUID()).sqlite").path
            defer { if db == nil { for suffix in ["", "-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) } } }
            let database = try AuditDatabase(path: path, configuration: configuration)
            let entries = (0..<rows).map { Self.entry(index: $0, worker: workerID) }
            let batches = stride(from: 0, to: entries.count, by: size).map { Array(entries[$0..<min($0 + size, entries.count)]) }
            let next = Mutex(0)
            let failure = Mutex<(any Error)?>(nil)
            let start = ContinuousClock.now
            // `inFlight` appenders take the next batch as they finish one, as the worker's batcher does.
            DispatchQueue.concurrentPerform(iterations: min(inFlight, batches.count)) { _ in
                while true {
                    let index = next.withLock { value -> Int in
                        defer { value += 1 }
                        return value
                    }
                    guard index < batches.count, failure.withLock({ $0 == nil }) else { return }
                    do { try database.append(batches[index]) } catch { failure.withLock { $0 = error } }
                }
            }
            if let error = failure.withLock({ $0 }) { throw error }
            let seconds = (ContinuousClock.now - start).seconds
            results[String(size)] = Double(rows) / seconds
            if !json {
                print(String(format: "batch %3d, %d in flight: %7d rows in %6.2f s = %8.0f rows/s", size, inFlight, rows, seconds, Double(rows) / seconds))
            }
        }
        if json {
            let data = try JSONSerialization.data(withJSONObject: ["rows_per_s": results], options: [.sortedKeys])
            print(String(decoding: data, as: UTF8.self))
        }
    }

    static let prompts = [
        "My card 4111 1111 1111 1111 was charged twice, please call me on +44 20 7946 0958.",
        "我的信用卡年费是多少？身份证号 11010519491231002X，手机 13812345678。",
        "What is the daily transfer limit to IBAN GB82 WEST 1234 5698 7654 32?",
        "I lost my card, email me at jane.doe@example.com — 转人工",
        "How do I raise a complaint about a fee of 25.00 on order 1234567890123?",
    ]

    static func entry(index: Int, worker: String) -> AuditEntry {
        let now = Date()
        var record = AuditRecord(
            requestID: "\(worker)-\(UUID().uuidString)", receivedAt: now.addingTimeInterval(-0.4), completedAt: now,
            route: index % 7 == 0 ? .escalated : .auto, status: .ok, workerID: worker)
        record.conversationID = "conv-\(index % 97)"
        record.channel = "app"
        record.topic = "sluice.requests"
        record.partition = Int64(index % 12)
        record.offset = Int64(index)
        record.startedAt = now.addingTimeInterval(-0.3)
        record.queueMs = 100
        record.inferenceMs = 300
        record.modelName = "gemma-3-270m"
        record.modelQuantization = "Q4_K_M"
        record.modelSHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
        record.promptTemplateVersion = "v1"
        record.samplingParameters = "{\"max_tokens\":64,\"temperature\":0}"
        record.promptTokens = 40
        record.completionTokens = 64
        record.confidence = Double(index % 100) / 100
        record.confidenceMethod = "geometric_mean_token_prob"
        record.confidenceThreshold = 0.7
        return AuditEntry(
            record: record, prompt: prompts[index % prompts.count],
            response: "Thank you for contacting us. Your request \(index) has been noted.", customerRef: "customer-\(index % 1000)")
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
