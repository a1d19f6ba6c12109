import Foundation
import KafkaClient
import Testing

/// A real Prometheus server (Debian's `prometheus`, loopback only) with the shipped alert rules,
/// scraping one worker every second.
final class PrometheusServer: @unchecked Sendable {
    let port: Int
    private let process = Process()

    init(scraping target: String, directory: URL) throws {
        port = try freeLocalPort()
        let config = directory.appendingPathComponent("prometheus.yml")
        try """
            global: {scrape_interval: 1s, evaluation_interval: 1s}
            rule_files: ["\(Ops.root.appendingPathComponent("ops/prometheus/alerts.yml").path)"]
            scrape_configs:
              - job_name: sluice
                static_configs: [{targets: ["\(target)"]}]
            """.write(to: config, atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: "/usr/bin/prometheus")
        process.arguments = ["--config.file=\(config.path)", "--storage.tsdb.path=\(directory.appendingPathComponent("tsdb").path)",
                             "--web.listen-address=127.0.0.1:\(port)", "--log.level=warn"]
        process.standardOutput = FileHandle.nullDevice
        let log = directory.appendingPathComponent("prometheus.log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        process.standardError = try FileHandle(forWritingTo: log)
        try process.run()
    }

    func stop() {
        if process.isRunning { process.terminate() }
    }

    /// GET on the server's HTTP API; nil while it does not answer.
    func api(_ path: String, query: String? = nil) throws -> [String: Any]? {
        var arguments = ["-s", "-G", "http://127.0.0.1:\(port)\(path)"]
        if let query { arguments += ["--data-urlencode", "query=\(query)"] }
        let (status, output) = try Ops.run("/usr/bin/curl", arguments)
        guard status == 0 else { return nil }
        return try? JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
    }

    /// The value of a query returning one sample (nil when empty), failing on a query error.
    func scalar(_ query: String) throws -> Double? {
        let response = try #require(try api("/api/v1/query", query: query))
        #expect(response["status"] as? String == "success", "\(query): \(response)")
        let result = Ops.list(response, "data.result")
        guard let sample = result.first, let value = Ops.list(sample, "value").last as? String else { return nil }
        return Double(value)
    }

    func waitUntilReady() async throws {
        try await withDeadlineThrowing(30, "Prometheus to start") {
            while (try? Ops.run("/usr/bin/curl", ["-sf", "http://127.0.0.1:\(self.port)/-/ready"]).status) != 0 {
                try await Task.sleep(for: .milliseconds(200))  // polling an external process's HTTP endpoint
            }
        }
        try #require(process.isRunning, "the Prometheus answering on \(port) is not the one this test started")
    }
}

@Suite("Integration: Prometheus, alert rules and dashboard against a running worker", .serialized)
struct MonitoringIntegrationTests {
    /// 24 answered (2 of them escalated by the human-agent rule) and 2 rejected requests.
    static func traffic(_ harness: WorkerHarness) async throws {
        var messages: [(key: String?, value: [UInt8], headers: [KafkaHeader])] = (0..<22).map {
            (key: "k\($0 % 5)", value: WorkerHarness.request("p-\($0)"), headers: [])
        }
        messages += (0..<2).map { (key: "k", value: WorkerHarness.request("esc-\($0)", prompt: "请帮我转人工"), headers: []) }
        messages += [(key: "k", value: Array("{not json".utf8), headers: []), (key: "k", value: Array(#"{"id":"x"}"#.utf8), headers: [])]
        try await harness.send(messages)
    }

    @Test("every metric the alert rules and the dashboard name is on a running worker's /metrics, which promtool accepts")
    func metricNames() async throws {
        let harness = try await WorkerHarness(model: "echo")
        defer { harness.stopAll() }
        let port = try freeLocalPort()
        try await harness.startWorker("w1", extra: ["SLUICE_WORKER_METRICS_PORT": String(port)])
        try await Self.traffic(harness)

        let referenced = Ops.metricNames(in: try Ops.text("ops/prometheus/alerts.yml"))
            .union(Ops.metricNames(in: try Ops.dashboardExpressions().joined(separator: "\n")))
        #expect(referenced.count >= 15)
        @Sendable func exposed(_ body: String) -> Set<String> {
            Set(body.split(separator: "\n").compactMap { line -> String? in
                guard !line.hasPrefix("#"), let name = line.split(whereSeparator: { $0 == "{" || $0 == " " }).first else { return nil }
                return String(name)
            })
        }
        // Labelled series appear with their first sample (escalations, per-partition lag every 5 s).
        let body = try await withDeadlineThrowing(60, "every referenced metric on /metrics") {
            while true {
                let (_, body) = try await WorkerEndpointTests.get("http://127.0.0.1:\(port)/metrics")
                if referenced.isSubset(of: exposed(body)) { return body }
                try await Task.sleep(for: .milliseconds(250))  // scrape polling, as Prometheus does
            }
        }
        #expect(referenced.subtracting(exposed(body)).isEmpty)
        let file = harness.directory.appendingPathComponent("metrics.txt")
        try body.write(to: file, atomically: true, encoding: .utf8)
        let (status, complaints) = try Ops.run("/usr/bin/promtool", ["check", "metrics"], input: file)
        #expect(status == 0, "\(complaints)")
    }

    @Test("a real Prometheus scraping the worker counts exactly the requests sent; every rule and dashboard query evaluates")
    func prometheusScrape() async throws {
        let harness = try await WorkerHarness(model: "echo")
        defer { harness.stopAll() }
        let port = try freeLocalPort()
        try await harness.startWorker("w1", extra: ["SLUICE_WORKER_METRICS_PORT": String(port)])
        let prometheus = try PrometheusServer(scraping: "127.0.0.1:\(port)", directory: harness.directory)
        defer { prometheus.stop() }
        try await prometheus.waitUntilReady()
        // The first scrape precedes the traffic, so Prometheus sees the counters rise from 0.
        try await withDeadlineThrowing(30, "Prometheus's first scrape of the worker") {
            while try prometheus.scalar(#"up{job="sluice"}"#) != 1 {
                try await Task.sleep(for: .milliseconds(200))  // scrapes run every second
            }
        }
        try await Self.traffic(harness)

        let total = try await withDeadlineThrowing(90, "Prometheus to see 26 requests") {
            while true {
                if let value = try prometheus.scalar("sum(sluice_requests_total)"), value >= 26 { return value }
                try await Task.sleep(for: .milliseconds(500))  // the next scrape is at most 1 s away
            }
        }
        #expect(total == 26)
        #expect(try prometheus.scalar(#"sum(sluice_requests_total{status="ok"})"#) == 24)
        #expect(try prometheus.scalar(#"sum(sluice_requests_total{status="rejected"})"#) == 2)
        #expect(try prometheus.scalar(#"sum(sluice_escalations_total{reason="human_requested"})"#) == 2)
        #expect(try prometheus.scalar("sum(sluice_ready)") == 1)
        #expect(try prometheus.scalar(#"up{job="sluice"}"#) == 1)

        // The shipped rules load and evaluate without errors against the real series.
        // (name, health, last error) of every rule, once each has been evaluated.
        let rules = try await withDeadlineThrowing(30, "every rule to be evaluated") {
            while true {
                let response = try prometheus.api("/api/v1/rules") ?? [:]
                let rules = Ops.list(response, "data.groups").flatMap { Ops.list($0, "rules") }
                if !rules.isEmpty, rules.allSatisfy({ !(Ops.string($0, "lastEvaluation") ?? "0001").hasPrefix("0001") }) {
                    return rules.map { [Ops.string($0, "name") ?? "?", Ops.string($0, "health") ?? "?", Ops.string($0, "lastError") ?? ""] }
                }
                try await Task.sleep(for: .milliseconds(500))  // evaluation runs every second
            }
        }
        #expect(rules.count == 11)
        for rule in rules { #expect(rule[1] == "ok", "\(rule[0]): \(rule[2])") }
        // A healthy, scraped worker clears the no-worker alert (pending from before the first scrape).
        try await withDeadlineThrowing(20, "SluiceNoWorkerReady to clear") {
            while Ops.list(try prometheus.api("/api/v1/alerts") ?? [:], "data.alerts").contains(where: { Ops.string($0, "labels.alertname") == "SluiceNoWorkerReady" }) {
                try await Task.sleep(for: .milliseconds(500))  // evaluation runs every second
            }
        }

        // Every dashboard query is valid PromQL, and the throughput query sees the traffic.
        for expression in try Ops.dashboardExpressions() {
            let response = try #require(try prometheus.api("/api/v1/query", query: Ops.resolvingGrafanaVariables(expression)))
            #expect(response["status"] as? String == "success", "\(expression): \(response)")
        }
        // The throughput panel's rate sees the traffic (increase() extrapolates, so only "some").
        let okIncrease = try await withDeadlineThrowing(30, "the throughput query to see the traffic") {
            while true {
                if let value = try prometheus.scalar(#"sum(increase(sluice_requests_total{status="ok",instance=~".*"}[5m]))"#), value > 0 {
                    return value
                }
                try await Task.sleep(for: .milliseconds(500))  // the next scrape is at most 1 s away
            }
        }
        #expect(okIncrease > 0)
    }
}
