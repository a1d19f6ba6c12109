import Foundation
import KafkaClient
import Testing

/// The `sluice` binary as an operator runs it. `ops/test` sets `SLUICE_BIN` and
/// `SLUICE_TEST_BROKERS`; without them these tests fail rather than skip.
@Suite("Integration: sluice command line")
struct CLITests {
    struct Output {
        let status: Int32
        let stdout: String
        let stderr: String
    }

    static func environment(_ name: String) throws -> String {
        guard let value = ProcessInfo.processInfo.environment[name], !value.isEmpty else {
            throw CLIError(message: "\(name) is not set: run the tests with `make test`")
        }
        return value
    }

    struct CLIError: Error, CustomStringConvertible {
        let message: String
        var description: String { message }
    }

    static func sluice(_ arguments: [String], environment extra: [String: String] = [:]) async throws -> Output {
        let binary = try environment("SLUICE_BIN")
        return try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(with: Result {
                    let process = Process()
                    process.executableURL = URL(fileURLWithPath: binary)
                    process.arguments = arguments
                    process.environment = ProcessInfo.processInfo.environment.merging(extra) { _, new in new }
                    // Run outside the repository so Config/sluice.yaml does not apply implicitly.
                    process.currentDirectoryURL = FileManager.default.temporaryDirectory
                    let out = Pipe()
                    let err = Pipe()
                    process.standardOutput = out
                    process.standardError = err
                    try process.run()
                    let stdout = out.fileHandleForReading.readDataToEndOfFile()
                    let stderr = err.fileHandleForReading.readDataToEndOfFile()
                    process.waitUntilExit()
                    return Output(
                        status: process.terminationStatus,
                        stdout: String(decoding: stdout, as: UTF8.self),
                        stderr: String(decoding: stderr, as: UTF8.self)
                    )
                })
            }
        }
    }

    @Test("sluice version names Sluice's and librdkafka's versions")
    func version() async throws {
        let output = try await Self.sluice(["version"])
        #expect(output.status == 0)
        #expect(output.stdout.contains("sluice 0."))
        #expect(output.stdout.contains("librdkafka \(Librdkafka.version)"))
    }

    @Test("sluice topics create makes the four configured topics and succeeds when they exist")
    func topicsCreate() async throws {
        let brokers = try Self.environment("SLUICE_TEST_BROKERS")
        let prefix = "cli-\(UUID().uuidString.prefix(6).lowercased())"
        let names = [
            "SLUICE_TOPICS_REQUESTS": "\(prefix).requests",
            "SLUICE_TOPICS_REPLIES": "\(prefix).replies",
            "SLUICE_TOPICS_ESCALATIONS": "\(prefix).escalations",
            "SLUICE_TOPICS_DEAD_LETTERS": "\(prefix).requests.dlq",
        ]
        let first = try await Self.sluice(["topics", "create", "--brokers", brokers, "--partitions", "4"], environment: names)
        #expect(first.status == 0, "\(first.stderr)")
        for name in names.values { #expect(first.stdout.contains("\(name)\tcreated")) }

        let second = try await Self.sluice(["topics", "create", "--brokers", brokers], environment: names)
        #expect(second.status == 0, "\(second.stderr)")
        for name in names.values { #expect(second.stdout.contains("\(name)\texists")) }

        let admin = try KafkaAdmin(configuration: KafkaClientConfiguration(bootstrapServers: [brokers]))
        let metadata = try await admin.metadata()
        for name in names.values {
            #expect(metadata.topic(named: name)?.partitions.count == 4)
        }
    }

    @Test("a bad configuration value exits non-zero and names the key")
    func badConfiguration() async throws {
        let output = try await Self.sluice(["topics", "create"], environment: ["SLUICE_TOPICS_PARTITIONS": "-3"])
        #expect(output.status != 0)
        #expect(output.stderr.contains("topics.partitions"))
    }
}
