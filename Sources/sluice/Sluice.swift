import ArgumentParser

/// The `sluice` command line.
@main
struct Sluice: AsyncParsableCommand {
    static let version = "0.1.0"

    static let configuration = CommandConfiguration(
        commandName: "sluice",
        abstract: "Kafka-native LLM inference worker for customer-service pipelines.",
        version: version,
        subcommands: [RunCommand.self, SendCommand.self, LoadCommand.self, VersionCommand.self, TopicsCommand.self, ConfigCommand.self, AuditCommand.self, ModelCommand.self, KnowledgeCommand.self, EvalCommand.self, CacheCommand.self]
    )
}
