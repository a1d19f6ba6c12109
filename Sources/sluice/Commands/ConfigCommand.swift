import ArgumentParser
import Foundation
import Worker

struct ConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "config",
        abstract: "Check the configuration, or print the configuration reference.",
        subcommands: [Check.self, Reference.self]
    )

    struct Check: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Load the file, SLUICE_* variables and flags as `sluice run` would; print the result (secrets redacted) or the first error."
        )

        @OptionGroup var common: CommonOptions

        func run() throws {
            let configuration = try common.loadConfiguration(overrides: common.overrides)
            print(try configuration.redactedYAML(), terminator: "")
        }
    }

    struct Reference: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the configuration reference (Markdown) generated from the commented configuration file."
        )

        @Option(help: "The commented configuration file.")
        var file = "Config/sluice.yaml"

        func run() throws {
            guard let text = FileManager.default.contents(atPath: file).flatMap({ String(data: $0, encoding: .utf8) }) else {
                throw ValidationError("cannot read \(file)")
            }
            print(ConfigurationReference.markdown(yaml: text), terminator: "")
        }
    }
}
