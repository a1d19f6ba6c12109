import KafkaClient
import Testing

@Suite("librdkafka secret properties")
struct SecretPropertiesTests {
    @Test("names holding secrets are redacted, the others shown", arguments: [
        ("ssl.key.password", true), ("ssl.key.pem", true), ("ssl.certificate.pem", true), ("sasl.password", true),
        ("sasl.oauthbearer.client.secret", true), ("sasl.oauthbearer.config", true), ("ssl.keystore.password", true),
        ("sasl.oauthbearer.token.endpoint.url", true), ("linger.ms", false), ("bootstrap.servers", false), ("client.id", false),
    ])
    func names(name: String, secret: Bool) {
        #expect(SecretProperties.isSecret(name) == secret)
        #expect(SecretProperties.redacted(name, "v") == (secret ? "<redacted>" : "v"))
    }
}
