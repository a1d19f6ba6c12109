import ArgumentParser
import AuditLog
import Foundation
import Worker

struct AuditCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "audit",
        abstract: "Query, verify and maintain the compliance audit log.",
        discussion: "All subcommands are read-only and safe while workers write, except prune, review and checkpoint.",
        subcommands: [
            AuditQueryCommand.self, AuditVerifyCommand.self, AuditStatsCommand.self, AuditExportCommand.self,
            AuditPruneCommand.self, AuditReviewCommand.self, AuditRevealCommand.self, AuditCheckpointCommand.self,
            AuditKeygenCommand.self, AuditBenchCommand.self,
        ]
    )
}

/// Options shared by the audit subcommands.
struct AuditOptions: ParsableArguments {
    @Option(help: "The audit database (default: audit.db from the configuration).")
    var db: String?

    @Option(help: "Configuration file (default: Config/sluice.yaml when present).")
    var config: String?

    func configuration() throws -> SluiceConfiguration {
        var overrides: [String: String] = [:]
        if let db { overrides["audit.db"] = db }
        return try CommonOptions.load(file: config, overrides: overrides)
    }

    func openForReading() throws -> AuditDatabase {
        try AuditDatabase.openForReading(path: configuration().audit.db)
    }

    func openForWriting() throws -> AuditDatabase {
        let configuration = try configuration()
        try FileManager.default.createDirectory(
            atPath: URL(fileURLWithPath: configuration.audit.db).deletingLastPathComponent().path,
            withIntermediateDirectories: true
        )
        return try AuditDatabase(path: configuration.audit.db, configuration: configuration.audit.logConfiguration())
    }
}

/// Parses RFC 3339 times (`2026-11-22T08:00:00Z`, offsets and fractions allowed) and dates
/// (`2026-11-22`, midnight UTC).
struct TimeArgument: ExpressibleByArgument {
    let date: Date

    init?(argument: String) {
        let full = ISO8601DateFormatter()
        full.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        let plain = ISO8601DateFormatter()
        let day = ISO8601DateFormatter()
        day.formatOptions = [.withFullDate]
        guard let date = full.date(from: argument) ?? plain.date(from: argument) ?? day.date(from: argument) else { return nil }
        self.date = date
    }
}

extension AuditRecord.Status: ExpressibleByArgument {}
extension ReviewRecord.Decision: ExpressibleByArgument {}
extension AuditDatabase.ExportFormat: ExpressibleByArgument {}

/// Writes lines to standard output without per-line flushing.
struct BufferedOutput {
    private var buffer = ""

    mutating func write(_ line: String) {
        buffer += line
        buffer += "\n"
        if buffer.utf8.count > 1 << 16 { flush() }
    }

    mutating func flush() {
        FileHandle.standardOutput.write(Data(buffer.utf8))
        buffer = ""
    }
}
