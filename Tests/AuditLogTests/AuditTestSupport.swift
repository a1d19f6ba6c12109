import AuditLog
import Foundation
import Testing

/// Builds audit databases in temporary directories and runs the `sqlite3` CLI on them the
/// way an auditor (or an attacker) would.
enum AuditFixture {
    static let keys = AuditKeys.generate()

    static func configuration(maxPageCount: Int? = nil, busyTimeout: TimeInterval = 5, checkpointEvery: Int64 = 0) throws -> AuditLogConfiguration {
        AuditLogConfiguration(
            keys: try AuditKeys(pseudonymKey: keys.pseudonymKey, sealingKey: keys.sealingKey, signingKey: keys.signingKey),
            masker: try PIIMasker(),
            busyTimeout: busyTimeout,
            checkpointEvery: checkpointEvery,
            maxPageCount: maxPageCount
        )
    }

    static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-audit-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    static func newDatabase(configuration: AuditLogConfiguration? = nil) throws -> AuditDatabase {
        let path = try temporaryDirectory().appendingPathComponent("audit.sqlite").path
        return try AuditDatabase(path: path, configuration: configuration ?? self.configuration())
    }

    static let base = Date(timeIntervalSince1970: 1_795_000_000)  // 2026-11-18

    /// A deterministic entry: request `r<index>`, confidence index/20, escalated below 0.7.
    static func entry(_ index: Int, prompt: String? = nil, status: AuditRecord.Status = .ok, at time: Date? = nil) -> AuditEntry {
        let completed = (time ?? base).addingTimeInterval(Double(index) * 60)
        let confidence = Double(index % 20) / 20
        var record = AuditRecord(
            requestID: "r\(index)", receivedAt: completed.addingTimeInterval(-Double(100 + index * 10) / 1000),
            completedAt: completed, route: confidence < 0.7 ? .escalated : .auto, status: status, workerID: "w1")
        record.conversationID = "c\(index % 3)"
        record.channel = "app"
        record.topic = "sluice.requests"
        record.partition = Int64(index % 4)
        record.offset = Int64(index)
        record.queueMs = Int64(index)
        record.inferenceMs = Int64(50 + index)
        record.modelName = "gemma-3-270m"
        record.modelQuantization = "Q4_K_M"
        record.confidence = status == .ok ? confidence : nil
        record.confidenceThreshold = 0.7
        record.escalationReason = confidence < 0.7 ? "low_confidence" : nil
        return AuditEntry(
            record: record, prompt: prompt ?? "question \(index): what is the fee?", response: "answer \(index)",
            customerRef: "customer-\(index % 5)")
    }

    /// A database with `rows` rows, two reviews and (when `checkpoint`) a signed checkpoint.
    static func populated(rows: Int = 20, checkpoint: Bool = true) throws -> AuditDatabase {
        let database = try newDatabase()
        try database.append((1...rows).map { entry($0) })
        try database.review(requestID: "r2", reviewer: "alice", decision: .approved, note: nil)
        try database.review(requestID: "r3", reviewer: "bob", decision: .corrected, note: "fee was 10")
        if checkpoint { try database.checkpoint() }
        return database
    }
}

/// Runs the sqlite3 CLI (Debian's package) on `path`.
@discardableResult
func sqlite3(_ path: String, _ sql: String) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
    process.arguments = [path, sql]
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Runs a shell command; returns its exit status.
@discardableResult
func shell(_ command: String) throws -> Int32 {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    try process.run()
    process.waitUntilExit()
    return process.terminationStatus
}
