import ArgumentParser
import KafkaClient
import Worker

struct TopicsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topics",
        abstract: "Manage Sluice's Kafka topics.",
        subcommands: [Create.self]
    )

    struct Create: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the request, reply, escalation and dead-letter topics (existing ones are kept)."
        )

        @OptionGroup var common: CommonOptions

        @Option(help: "Partitions per topic (default: topics.partitions, 12).")
        var partitions: Int?

        @Option(name: .customLong("replication-factor"), help: "Replicas per partition (default: topics.replication_factor, 1).")
        var replicationFactor: Int?

        func run() async throws {
            var overrides = common.overrides
            if let partitions { overrides["topics.partitions"] = String(partitions) }
            if let replicationFactor { overrides["topics.replication_factor"] = String(replicationFactor) }
            let configuration = try common.loadConfiguration(overrides: overrides)
            let admin = try KafkaAdmin(configuration: configuration.kafka.clientConfiguration)
            let specs = configuration.topics.all.map {
                KafkaTopicSpec(
                    name: $0,
                    partitions: Int32(configuration.topics.partitions),
                    replicationFactor: Int16(configuration.topics.replicationFactor)
                )
            }
            let outcome = try await admin.createTopics(specs)
            for spec in specs {
                let what = outcome[spec.name] == .created ? "created" : "exists"
                print("\(spec.name)\t\(what)")
            }
        }
    }
}
