import ArgumentParser
import KafkaClient

struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version",
        abstract: "Print Sluice's version and the librdkafka version in use."
    )

    func run() throws {
        print("sluice \(Sluice.version)")
        print("librdkafka \(Librdkafka.version)")
        do {
            try Librdkafka.checkVersion()
        } catch {
            print("error: \(error.message)")
            throw ExitCode(3)
        }
    }
}
