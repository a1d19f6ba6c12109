/// Which librdkafka properties hold secrets, so that no log line, error message or
/// configuration dump shows their values: any name containing `password`, `secret`, `key`,
/// `pem`, `token` or `credential`, and `sasl.oauthbearer.config` (which carries client
/// secrets as `key=value` pairs).
public enum SecretProperties {
    static let markers = ["password", "secret", "key", "pem", "token", "credential"]

    public static func isSecret(_ name: String) -> Bool {
        let lowered = name.lowercased()
        return lowered == "sasl.oauthbearer.config" || markers.contains { lowered.contains($0) }
    }

    /// `value`, or `<redacted>` when `name` holds a secret.
    public static func redacted(_ name: String, _ value: String) -> String {
        isSecret(name) ? "<redacted>" : value
    }
}
