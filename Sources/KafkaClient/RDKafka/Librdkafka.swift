import CRdKafka

/// Facts about the librdkafka library this process is linked against.
public enum Librdkafka {
    /// The oldest librdkafka Sluice accepts. 2.1.2 fixed the skipping of tagged fields
    /// ("Read underflow" on every connection to brokers that send them).
    public static let minimumVersion = (major: 2, minor: 1, patch: 2)

    /// The version string librdkafka reports, e.g. `2.8.0`.
    public static var version: String { String(cString: rd_kafka_version_str()) }

    /// The version as librdkafka's packed integer `0xMMmmrrxx`.
    public static var versionNumber: Int32 { rd_kafka_version() }

    /// Throws `KafkaError.Code.unsupportedLibrdkafka` when the linked librdkafka is too old.
    public static func checkVersion() throws(KafkaError) {
        try check(versionNumber: versionNumber, versionString: version)
    }

    static func check(versionNumber: Int32, versionString: String) throws(KafkaError) {
        let (major, minor, patch) = minimumVersion
        let minimum = Int32(major << 24 | minor << 16 | patch << 8)
        guard versionNumber >= minimum else {
            throw KafkaError(
                code: .unsupportedLibrdkafka,
                message: """
                    librdkafka \(versionString) is linked, but Sluice needs \(major).\(minor).\(patch) or newer \
                    (older versions mis-read tagged protocol fields and fail every connection with \
                    "Read underflow"). Debian 12's librdkafka is 2.0.2; run `ops/bootstrap` to build 2.8.0 \
                    into /usr/local, then `ldconfig`.
                    """
            )
        }
    }
}
