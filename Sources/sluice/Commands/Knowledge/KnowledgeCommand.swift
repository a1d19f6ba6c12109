import ArgumentParser
import Foundation
import Knowledge
import Worker

/// `sluice kb …`: the bank's approved answers, as the worker retrieves them.
struct KnowledgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kb",
        abstract: "Import, list, search and export the knowledge base (approved answers).",
        subcommands: [Import.self, List.self, Search.self, Export.self]
    )

    struct Location: ParsableArguments {
        @Option(help: "The knowledge base file (SQLite; default: knowledge.db of the configuration, i.e. SLUICE_KNOWLEDGE_DB or data/knowledge.sqlite).")
        var db: String?
        @Option(help: "Configuration file (default: Config/sluice.yaml when present).") var config: String?

        func open() throws -> KnowledgeBase {
            let db: String
            if let explicit = self.db {
                db = explicit
            } else {
                db = try CommonOptions.load(file: config).knowledge.db
                guard !db.isEmpty else { throw ValidationError("knowledge.db is empty: pass --db FILE") }
            }
            let directory = URL(fileURLWithPath: db).deletingLastPathComponent().path
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            return try KnowledgeBase(path: db)
        }
    }

    struct Import: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load entries from JSONL (id, title, text, lang, questions, tags): replaces by id, removes what the file no longer has.")
        @OptionGroup var location: Location
        @Argument(help: "The JSONL file.") var file: String

        func run() throws {
            let entries = try KnowledgeEntry.parseJSONL(String(contentsOfFile: file, encoding: .utf8))
            let summary = try location.open().importEntries(entries)
            print("imported \(entries.count) entries: \(summary.added) added, \(summary.replaced) replaced, \(summary.unchanged) unchanged, \(summary.removed) removed; version \(summary.version)")
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The entries and the knowledge version.")
        @OptionGroup var location: Location

        func run() throws {
            let base = try location.open()
            print("version \(try base.version())")
            for entry in try base.entries() { print("\(entry.id)\t\(entry.lang ?? "-")\t\(entry.title)") }
        }
    }

    struct Search: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The passages a question retrieves, with their coverage.")
        @OptionGroup var location: Location
        @Argument(help: "The question.") var query: String
        @Option(help: "Passages at most.") var limit = 3
        @Option(help: "Least share of the question's terms a passage must contain.") var minimumCoverage = 0.35

        func run() throws {
            let passages = try location.open().search(query, limit: limit, minimumCoverage: minimumCoverage)
            if passages.isEmpty { print("no passage above the threshold") }
            for passage in passages {
                print(String(format: "%.2f", passage.coverage) + "\t\(passage.entry.id)\t\(passage.entry.text)")
            }
        }
    }

    struct Export: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Every entry as JSONL (the import format).")
        @OptionGroup var location: Location

        func run() throws {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
            for entry in try location.open().entries() { print(String(decoding: try encoder.encode(entry), as: UTF8.self)) }
        }
    }
}
