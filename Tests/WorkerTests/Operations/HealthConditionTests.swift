import AuditLog
import Foundation
import KafkaClient
import Testing

/// `/healthz` and `/readyz` tell the truth: an audit store that fails every write makes the
/// worker unready at once and unhealthy after `worker.audit_unhealthy_after_ms`; it recovers,
/// and loses nothing, when the store does.
@Suite("Integration: health conditions (real broker)", .serialized)
struct HealthConditionTests {
    @Test("a locked audit database: /readyz fails, then /healthz (audit_failing, with its metric); both recover and every request is audited once")
    func auditFailing() async throws {
        let harness = try await WorkerHarness(model: "echo", partitions: 1)
        defer { harness.stopAll() }
        let port = try freeLocalPort()
        try await harness.startWorker("w1", extra: [
            "SLUICE_WORKER_METRICS_PORT": String(port), "SLUICE_AUDIT_BUSY_TIMEOUT_MS": "100", "SLUICE_WORKER_AUDIT_UNHEALTHY_AFTER_MS": "1500",
        ])
        try await harness.send([(key: "k", value: WorkerHarness.request("before"), headers: [])])
        _ = try await harness.auditDatabase(rows: 1)
        #expect(try await WorkerEndpointTests.get("http://127.0.0.1:\(port)/healthz").0 == 200)

        let lock = try SQLiteWriteLock(path: harness.auditPath)
        let ids = (0..<5).map { "during-\($0)" }
        try await harness.send(ids.map { (key: "k", value: WorkerHarness.request($0), headers: []) })
        // Probing the endpoints as an orchestrator does.
        let unready = try await withDeadlineThrowing(60, "/readyz to fail") {
            while true {
                let (status, body) = try await WorkerEndpointTests.get("http://127.0.0.1:\(port)/readyz")
                if status == 503 { return body }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(unready.contains("audit writes are failing"))
        let unhealthy = try await withDeadlineThrowing(60, "/healthz to fail") {
            while true {
                let (status, body) = try await WorkerEndpointTests.get("http://127.0.0.1:\(port)/healthz")
                if status == 503 { return body }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(unhealthy.contains("audit_failing"))
        let metrics = try await WorkerEndpointTests.get("http://127.0.0.1:\(port)/metrics").1
        #expect(metrics.contains(#"sluice_health_failing{condition="audit_failing"} 1"#), "\(metrics.split(separator: "\n").filter { $0.contains("health") })")

        try lock.release()
        let audit = try await harness.auditDatabase(rows: 1 + ids.count)
        #expect(try audit.count() == 1 + ids.count)
        try await withDeadlineThrowing(60, "/healthz and /readyz to recover") {
            while true {
                let healthy = try await WorkerEndpointTests.get("http://127.0.0.1:\(port)/healthz").0 == 200
                let ready = try await WorkerEndpointTests.get("http://127.0.0.1:\(port)/readyz").0 == 200
                if healthy && ready { return }
                try await Task.sleep(for: .milliseconds(100))
            }
        }
        #expect(try audit.verify().isIntact)
    }
}
