import Foundation
import Testing
import Worker
import Yams

/// Reading the shipped operations files (compose, Kubernetes, Prometheus, Grafana, Dockerfile)
/// and running the real tools (`promtool`, `sluice`) on them.
enum Ops {
    static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    struct Failure: Error, CustomStringConvertible { let description: String }

    static func text(_ path: String) throws -> String {
        try String(contentsOf: root.appendingPathComponent(path), encoding: .utf8)
    }

    static func yaml(_ path: String) throws -> [String: Any] {
        guard let mapping = try Yams.load(yaml: text(path)) as? [String: Any] else {
            throw Failure(description: "\(path): the top level is not a mapping")
        }
        return mapping
    }

    /// Every document of a multi-document YAML file.
    static func documents(_ path: String) throws -> [[String: Any]] {
        try Yams.load_all(yaml: text(path)).map { document in
            guard let mapping = document as? [String: Any] else { throw Failure(description: "\(path): a document is not a mapping") }
            return mapping
        }
    }

    /// The value at a dotted path of nested mappings (`"spec.template.spec"`).
    static func value(_ object: Any?, _ path: String) -> Any? {
        path.split(separator: ".").reduce(object) { current, key in (current as? [String: Any])?[String(key)] }
    }

    static func mapping(_ object: Any?, _ path: String) -> [String: Any] { value(object, path) as? [String: Any] ?? [:] }
    static func list(_ object: Any?, _ path: String) -> [Any] { value(object, path) as? [Any] ?? [] }
    static func string(_ object: Any?, _ path: String) -> String? {
        switch value(object, path) {
        case let text as String: text
        case let number as Int: String(number)
        case let other?: "\(other)"
        case nil: nil
        }
    }

    /// `${NAME:-default}` as docker compose interpolates it with NAME unset.
    static func interpolateDefaults(_ text: String) -> String {
        let pattern = /\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}/
        return text.replacing(pattern) { match in String(match.output.1 ?? "") }
    }

    /// Every environment variable name the configuration understands.
    static func configurationVariables() throws -> Set<String> {
        Set(try ConfigurationLoader.leaves(of: ConfigurationLoader.defaultsTree()).map(ConfigurationLoader.environmentVariable(for:)))
    }

    /// Loads `Config/sluice.yaml` with these variables as `sluice run` would.
    static func configuration(environment: [String: String]) throws -> SluiceConfiguration {
        try ConfigurationLoader(environment: environment).load(file: root.appendingPathComponent("Config/sluice.yaml").path)
    }

    /// Runs a program to completion; returns its exit status and combined output.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, input: URL? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.currentDirectoryURL = root
        if let environment { process.environment = environment }
        if let input { process.standardInput = try FileHandle(forReadingFrom: input) }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    static func sluiceBinary() throws -> String {
        guard let binary = ProcessInfo.processInfo.environment["SLUICE_BIN"] else {
            throw Failure(description: "SLUICE_BIN must be set: run `make test`")
        }
        return binary
    }

    /// The `--long` options `sluice <subcommand…> --help` lists.
    static func options(of subcommand: [String]) throws -> Set<String> {
        let (status, help) = try run(sluiceBinary(), subcommand + ["--help"])
        guard status == 0 else { throw Failure(description: "sluice \(subcommand.joined(separator: " ")) --help failed: \(help)") }
        return Set(help.matches(of: /--[a-z][a-z0-9-]*/).map { String($0.output) })
    }

    /// Metric names (`sluice_…`) mentioned in a PromQL-bearing file; recording rules (`sluice:…`) are not metrics.
    static func metricNames(in text: String) -> Set<String> {
        Set(text.matches(of: /(^|[^A-Za-z0-9_:])(sluice_[a-z0-9_]+)/.anchorsMatchLineEndings()).map { String($0.output.2) })
    }

    /// The PromQL expressions of the Grafana dashboard (panel targets, variables, annotations).
    static func dashboardExpressions() throws -> [String] {
        let data = try Data(contentsOf: root.appendingPathComponent("ops/grafana/dashboards/sluice.json"))
        guard let dashboard = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
            throw Failure(description: "the dashboard is not a JSON object")
        }
        var expressions: [String] = []
        for panel in dashboard["panels"] as? [[String: Any]] ?? [] {
            for target in panel["targets"] as? [[String: Any]] ?? [] {
                if let expression = target["expr"] as? String { expressions.append(expression) }
            }
        }
        for annotation in list(dashboard, "annotations.list") {
            if let expression = string(annotation, "expr") { expressions.append(expression) }
        }
        return expressions
    }

    /// A dashboard expression with Grafana's variables replaced as Grafana would for "All".
    static func resolvingGrafanaVariables(_ expression: String) -> String {
        expression
            .replacingOccurrences(of: "$__rate_interval", with: "1m")
            .replacingOccurrences(of: "$instance", with: ".*")
    }
}
