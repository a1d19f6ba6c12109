import Foundation
import Testing
import Worker

@Suite("Configuration loading")
struct ConfigurationTests {
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    private func write(_ yaml: String) throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID()).yaml").path
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test("the shipped Config/sluice.yaml holds exactly the defaults and documents every key")
    func shippedFile() throws {
        let path = Self.repositoryRoot.appendingPathComponent("Config/sluice.yaml").path
        let loaded = try ConfigurationLoader(environment: [:]).load(file: path)
        #expect(loaded == SluiceConfiguration())
        let text = try String(contentsOfFile: path, encoding: .utf8)
        for leaf in try ConfigurationLoader.leaves(of: ConfigurationLoader.defaultsTree()) {
            #expect(text.contains("\(leaf.last!):"), "Config/sluice.yaml does not document \(leaf.joined(separator: "."))")
        }
    }

    @Test("file, then SLUICE_* environment, then flags: later sources win")
    func layering() throws {
        let path = try write("""
            kafka:
              brokers: ["file:9092"]
              group_id: from-file
              properties: {"socket.keepalive.enable": "true"}
            topics:
              partitions: 6
            """)
        let environment = [
            "SLUICE_KAFKA_GROUP_ID": "from-env",
            "SLUICE_TOPICS_REQUESTS": "a.requests, b.requests",
            "SLUICE_KAFKA_CLIENT_ID": "12345",
            "SLUICE_TOPICS_REPLICATION_FACTOR": "3",
        ]
        let configuration = try ConfigurationLoader(environment: environment)
            .load(file: path, overrides: ["kafka.brokers": "flag-a:1,flag-b:2"])
        #expect(configuration.kafka.brokers == ["flag-a:1", "flag-b:2"])
        #expect(configuration.kafka.groupId == "from-env")
        #expect(configuration.kafka.clientId == "12345")
        #expect(configuration.kafka.properties == ["socket.keepalive.enable": "true"])
        #expect(configuration.topics.requests == ["a.requests", "b.requests"])
        #expect(configuration.topics.partitions == 6)
        #expect(configuration.topics.replicationFactor == 3)
        #expect(configuration.topics.replies == "sluice.replies")
    }

    @Test("mistakes are reported with the key that is wrong", arguments: [
        ("kafka:\n  brokerz: [\"h:1\"]\n", "kafka.brokerz"),
        ("topics:\n  partitions: many\n", "topics.partitions"),
        ("topics:\n  partitions: 0\n", "topics.partitions"),
        ("kafka:\n  brokers: [\"no-port\"]\n", "kafka.brokers"),
        ("kafka:\n  security_protocol: tls\n", "kafka.security_protocol"),
        ("topics:\n  replies: sluice.requests\n", "topics"),
        ("- just a list\n", ".yaml"),
    ])
    func errorsNameTheKey(yaml: String, key: String) throws {
        let path = try write(yaml)
        do {
            _ = try ConfigurationLoader(environment: [:]).load(file: path)
            Issue.record("accepted: \(yaml)")
        } catch let error as ConfigurationError {
            #expect(error.key.hasSuffix(key), "\(error)")
        }
    }

    @Test("a malformed environment override is rejected, not ignored")
    func badEnvironment() throws {
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: ["SLUICE_TOPICS_PARTITIONS": "twelve"]).load(file: try write("{}"))
        }
        #expect(throws: ConfigurationError.self) {
            try ConfigurationLoader(environment: ["SLUICE_KAFKA_PROPERTIES": "no-equals-sign"]).load(file: try write("{}"))
        }
    }
}
