import ArgumentParser
import Worker

/// Options every command that talks to Kafka accepts.
struct CommonOptions: ParsableArguments {
    @Option(help: "Configuration file (default: Config/sluice.yaml when present).")
    var config: String?

    @Option(help: "Kafka bootstrap servers, host:port[,host:port] (overrides kafka.brokers).")
    var brokers: String?

    var overrides: [String: String] {
        var result: [String: String] = [:]
        if let brokers { result["kafka.brokers"] = brokers }
        return result
    }

    /// Loads the configuration, turning configuration errors into a clean exit.
    func loadConfiguration(overrides: [String: String]) throws -> SluiceConfiguration {
        try Self.load(file: config, overrides: overrides)
    }

    /// Loads `file` (or the default) with `overrides`, a configuration error becoming a clean
    /// exit that names the key.
    static func load(file: String?, overrides: [String: String] = [:]) throws -> SluiceConfiguration {
        do {
            return try ConfigurationLoader().load(file: file, overrides: overrides)
        } catch let error as ConfigurationError {
            throw ValidationError(error.description)
        }
    }
}
