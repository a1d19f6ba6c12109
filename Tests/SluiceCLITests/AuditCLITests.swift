import Foundation
import Testing

/// `sluice audit …` as an auditor runs it, on files several processes write at once.
@Suite("Integration: sluice audit command line")
struct AuditCLITests {
    static func temporaryDatabase() throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        return directory.appendingPathComponent("audit.sqlite").path
    }

    @Test("three processes append 5,000 rows each to one file at once: 15,000 rows, chain intact")
    func concurrentProcesses() async throws {
        let db = try Self.temporaryDatabase()
        let outputs = try await withThrowingTaskGroup(of: CLITests.Output.self) { group in
            for worker in ["w1", "w2", "w3"] {
                group.addTask {
                    try await CLITests.sluice(["audit", "bench", "--db", db, "--rows", "5000", "--batch", "16", "--worker-id", worker])
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        for output in outputs { #expect(output.status == 0, "\(output.stderr)") }
        let count = try sqlite3Count(db, "SELECT count(*) FROM audit_records")
        #expect(count == 15_000)
        #expect(try sqlite3Count(db, "SELECT count(DISTINCT worker_id) FROM audit_records") == 3)
        let verify = try await CLITests.sluice(["audit", "verify", "--db", db])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        #expect(verify.stdout.contains("intact: 15000 audit rows"))
    }

    @Test("workers starting together on a new file all open it: 8 rounds of 4 processes migrate one new file each")
    func concurrentFirstOpen() async throws {
        // Before the migration lock, 3 processes at once failed 1 run in 10 with
        // "table audit_records already exists" (the fleet's first start on a host).
        for round in 0..<8 {
            let db = try Self.temporaryDatabase()
            let outputs = try await withThrowingTaskGroup(of: CLITests.Output.self) { group in
                for worker in 0..<4 {
                    group.addTask {
                        try await CLITests.sluice(["audit", "bench", "--db", db, "--rows", "5", "--batch", "1", "--worker-id", "w\(worker)"])
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            for output in outputs { #expect(output.status == 0, "round \(round): \(output.stderr)") }
            #expect(try sqlite3Count(db, "SELECT count(*) FROM audit_records") == 20, "round \(round)")
        }
    }

    @Test("query, stats, export and verify work from the command line; tampering exits 1 naming the row")
    func auditorWorkflow() async throws {
        let db = try Self.temporaryDatabase()
        let bench = try await CLITests.sluice(["audit", "bench", "--db", db, "--rows", "200", "--batch", "64"])
        #expect(bench.status == 0, "\(bench.stderr)")

        let query = try await CLITests.sluice(["audit", "query", "--db", db, "--escalated", "--format", "json", "--limit", "5"])
        #expect(query.status == 0, "\(query.stderr)")
        let rows = query.stdout.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(rows.count == 5)
        #expect(rows.allSatisfy { $0["route"] as? String == "escalated" })
        #expect(rows.allSatisfy { !(($0["prompt_masked"] as? String) ?? "").contains("4111 1111 1111 1111") })

        let csv = try await CLITests.sluice(["audit", "query", "--db", db, "--format", "csv", "--status", "ok"])
        #expect(csv.stdout.split(separator: "\n").count == 201)

        let stats = try await CLITests.sluice(["audit", "stats", "--db", db, "--json"])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(stats.stdout.utf8)) as? [String: Any])
        #expect(object["total"] as? Int == 200)

        let table = try await CLITests.sluice(["audit", "stats", "--db", db])
        #expect(table.stdout.contains("requests: 200"))
        #expect(table.stdout.contains("escalation rate"))

        let export = try await CLITests.sluice(["audit", "export", "--db", db, "--format", "jsonl"])
        let exportPath = db + ".jsonl"
        try export.stdout.write(toFile: exportPath, atomically: true, encoding: .utf8)
        let verifyExport = try await CLITests.sluice(["audit", "verify", "--export", exportPath])
        #expect(verifyExport.status == 0, "\(verifyExport.stdout)")
        #expect(verifyExport.stdout.contains("intact: 200 audit rows"))

        _ = try sqlite3Count(db, "DROP TRIGGER audit_records_no_update; UPDATE audit_records SET confidence = 0.99 WHERE seq = 42; SELECT 0;")
        let tampered = try await CLITests.sluice(["audit", "verify", "--db", db])
        #expect(tampered.status == 1)
        #expect(tampered.stdout.contains("TAMPERED: audit_records seq 42"))
    }

    @Test("prune refuses rows younger than the retention minimum; review needs an audited request")
    func maintenanceGuards() async throws {
        let db = try Self.temporaryDatabase()
        _ = try await CLITests.sluice(["audit", "bench", "--db", db, "--rows", "10", "--batch", "10"])
        let prune = try await CLITests.sluice(["audit", "prune", "--db", db, "--before", "2099-01-01"])
        #expect(prune.status != 0)
        #expect(prune.stderr.contains("minimum retention of 183 days"))
        let review = try await CLITests.sluice(["audit", "review", "--db", db, "--request-id", "missing", "--reviewer", "ann", "--decision", "approved"])
        #expect(review.status != 0)
        #expect(review.stderr.contains("not in the audit log"))
    }

    private func sqlite3Count(_ db: String, _ sql: String) throws -> Int {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        process.arguments = [db, sql]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Int(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
    }
}
