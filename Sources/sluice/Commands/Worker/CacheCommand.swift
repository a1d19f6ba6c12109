import ArgumentParser
import Foundation
import Worker

/// `sluice cache …`: the answer cache the workers of this host share.
struct CacheCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "cache",
        abstract: "Inspect or clear the answer cache (automated answers reused by identical later questions).",
        subcommands: [Stats.self, Clear.self]
    )

    struct Location: ParsableArguments {
        @Option(help: "The cache file (default: cache.db of the configuration, else answer-cache.sqlite beside audit.db).") var db: String?
        @Option(help: "Configuration file (default: Config/sluice.yaml when present).") var config: String?

        func open() throws -> AnswerCache {
            let configuration = try CommonOptions.load(file: config)
            let path = db ?? configuration.cache.path(auditDB: configuration.audit.db)
            guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("no answer cache at \(path)") }
            return try AnswerCache(path: path, maxEntries: configuration.cache.maxEntries, maxAge: TimeInterval(configuration.cache.maxAgeS))
        }
    }

    struct Stats: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Entries, their age, and the answers reused by the most keys.")
        @OptionGroup var location: Location
        @Option(help: "Answers to list.") var top: Int = 10

        func run() throws {
            let cache = try location.open()
            let stats = try cache.stats(top: top)
            let formatter = ISO8601DateFormatter()
            print("cache \(cache.path): \(stats.entries) entries, oldest \(stats.oldest.map(formatter.string) ?? "-"), newest \(stats.newest.map(formatter.string) ?? "-")")
            for answer in stats.answers { print("\(answer.requestID)\t\(answer.keys) keys") }
        }
    }

    struct Clear: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove every entry, or those reusing one request's answer (--request-id): an answer found wrong is not repeated.")
        @OptionGroup var location: Location
        @Option(name: .customLong("request-id"), help: "Only the entries that reuse this request's answer.") var requestID: String?

        func run() throws {
            let removed = try location.open().clear(requestID: requestID)
            print("removed \(removed) entr\(removed == 1 ? "y" : "ies")")
        }
    }
}
