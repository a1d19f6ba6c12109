import ArgumentParser
import AuditLog
import Dispatch
import Foundation
import Inference
import KafkaClient
import Logging
import Worker

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run a worker: consume requests, answer them, escalate, audit, commit."
    )

    @OptionGroup var common: CommonOptions
    @Option(help: "Consumer group (overrides kafka.group_id).") var group: String?
    @Option(name: .customLong("audit-db"), help: "Audit database (overrides audit.db).") var auditDB: String?
    @Option(help: "GGUF model file, or echo (overrides worker.model).") var model: String?
    @Option(name: .customLong("metrics-port"), help: "Port of /metrics, /healthz, /readyz (overrides worker.metrics_port; 0: off).") var metricsPort: Int?
    @Option(name: .customLong("worker-id"), help: "Worker id (overrides worker.worker_id).") var workerID: String?

    func run() async throws {
        var overrides = common.overrides
        if let group { overrides["kafka.group_id"] = group }
        if let auditDB { overrides["audit.db"] = auditDB }
        if let model { overrides["worker.model"] = model }
        if let workerID { overrides["worker.worker_id"] = workerID }
        if let metricsPort { overrides["worker.metrics_port"] = String(metricsPort) }
        if model == "echo" { overrides["worker.model_sha256"] = "" }
        let configuration = try common.loadConfiguration(overrides: overrides)
        if configuration.audit.pseudonymKey.isEmpty && !configuration.audit.allowDevelopmentKeys {
            throw ValidationError(
                "audit.pseudonym_key is not set: customer pseudonyms would use the public development key. "
                    + "Set SLUICE_AUDIT_PSEUDONYM_KEY (`sluice audit keygen` prints one), or audit.allow_development_keys: true "
                    + "(SLUICE_AUDIT_ALLOW_DEVELOPMENT_KEYS=true) for development.")
        }
        let level = Logger.Level(rawValue: configuration.log.level) ?? .info
        if configuration.log.format == "json" {
            LoggingSystem.bootstrap { label in
                var handler = JSONLogHandler(label: label)
                handler.logLevel = level
                return handler
            }
        } else {
            LoggingSystem.bootstrap { label in
                var handler = StreamLogHandler.standardError(label: label)
                handler.logLevel = level
                return handler
            }
        }
        var logger = Logger(label: "sluice.worker")
        logger.logLevel = level

        try Librdkafka.checkVersion()
        ComputePool.reuseLargeAllocations()
        if configuration.worker.threads > 0 { ComputePool.setThreads(configuration.worker.threads) }
        let backend: any GenerationBackend
        if configuration.worker.model == "echo" {
            backend = EchoBackend()
        } else {
            logger.info("loading model", metadata: ["file": "\(configuration.worker.model)"])
            backend = try ModelBackend(
                path: configuration.worker.model, expectedSHA256: configuration.worker.modelSha256,
                maxContext: configuration.worker.maxContext, prefixCacheBytes: configuration.worker.prefixCacheMb << 20)
        }
        let directory = URL(fileURLWithPath: configuration.audit.db).deletingLastPathComponent().path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let audit = try AuditDatabase(path: configuration.audit.db, configuration: configuration.audit.logConfiguration(logger: logger))
        let worker = try WorkerService(configuration: configuration, backend: backend, audit: audit, logger: logger)

        // SIGTERM and SIGINT start the graceful shutdown of the worker's ServiceGroup.
        try await worker.run(handlingSignals: true, exitOnOverrun: true)
    }
}
