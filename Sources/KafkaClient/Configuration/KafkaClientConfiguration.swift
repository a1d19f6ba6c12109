/// Settings shared by every Kafka client: where the cluster is, who we are, and how we
/// authenticate.
///
/// Anything librdkafka understands can be set through `properties`; those values are applied
/// last and win over the typed fields, so SASL/TLS or tuning keys pass through unchanged.
public struct KafkaClientConfiguration: Sendable, Equatable {
    /// `host:port` pairs used for the first connection.
    public var bootstrapServers: [String]
    /// Sent to the broker with every request (shows in broker logs and quotas).
    public var clientID: String
    /// Security settings, mapped to librdkafka's `security.protocol`, `sasl.*` and `ssl.*`.
    public var security: KafkaSecurity
    /// How long librdkafka keeps trying a request before it reports a timeout.
    public var requestTimeout: Duration
    /// Raw librdkafka properties (see librdkafka's CONFIGURATION.md), applied last.
    public var properties: [String: String]

    /// - Parameters:
    ///   - bootstrapServers: `host:port` pairs; at least one.
    ///   - clientID: the client id sent to brokers.
    ///   - security: plaintext by default.
    ///   - properties: raw librdkafka properties that override everything else.
    public init(
        bootstrapServers: [String],
        clientID: String = "sluice",
        security: KafkaSecurity = .plaintext,
        requestTimeout: Duration = .seconds(30),
        properties: [String: String] = [:]
    ) {
        self.bootstrapServers = bootstrapServers
        self.clientID = clientID
        self.security = security
        self.requestTimeout = requestTimeout
        self.properties = properties
    }

    func validate() throws(KafkaError) {
        let servers = bootstrapServers.filter { !$0.isEmpty }
        guard !servers.isEmpty || properties["bootstrap.servers"] != nil else {
            throw KafkaError(code: .configuration, message: "no bootstrap servers configured")
        }
        for server in servers where !server.contains(":") {
            throw KafkaError(
                code: .configuration,
                message: "bootstrap server '\(server)' has no port (expected host:port)"
            )
        }
        guard requestTimeout > .zero else {
            throw KafkaError(code: .configuration, message: "requestTimeout must be positive")
        }
    }

    var librdkafkaProperties: [String: String] {
        var result: [String: String] = [
            "bootstrap.servers": bootstrapServers.joined(separator: ","),
            "client.id": clientID,
            "request.timeout.ms": String(requestTimeout.milliseconds),
        ]
        result.merge(security.librdkafkaProperties) { _, new in new }
        return result
    }
}

/// How clients authenticate and encrypt. Mirrors librdkafka's `security.protocol` values.
public struct KafkaSecurity: Sendable, Equatable {
    /// `plaintext`, `ssl`, `sasl_plaintext` or `sasl_ssl`.
    public var `protocol`: String
    /// `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER` or `GSSAPI`.
    public var saslMechanism: String?
    public var saslUsername: String?
    public var saslPassword: String?
    /// PEM file of the CA that signed the brokers' certificates.
    public var caLocation: String?

    public init(
        protocol: String = "plaintext",
        saslMechanism: String? = nil,
        saslUsername: String? = nil,
        saslPassword: String? = nil,
        caLocation: String? = nil
    ) {
        self.protocol = `protocol`
        self.saslMechanism = saslMechanism
        self.saslUsername = saslUsername
        self.saslPassword = saslPassword
        self.caLocation = caLocation
    }

    /// No encryption, no authentication (local development only).
    public static let plaintext = KafkaSecurity()

    var librdkafkaProperties: [String: String] {
        var result = ["security.protocol": `protocol`]
        if let saslMechanism { result["sasl.mechanisms"] = saslMechanism }
        if let saslUsername { result["sasl.username"] = saslUsername }
        if let saslPassword { result["sasl.password"] = saslPassword }
        if let caLocation { result["ssl.ca.location"] = caLocation }
        return result
    }
}

extension Duration {
    /// Whole milliseconds, rounded down (librdkafka takes `*.ms` integers).
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
