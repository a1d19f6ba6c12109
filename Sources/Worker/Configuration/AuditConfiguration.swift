import AuditLog
import Foundation
import Logging

extension SluiceConfiguration.Audit {
    /// A fixed key used only when none is configured, so development pseudonyms are stable.
    /// Production deployments must set `audit.pseudonym_key`.
    static let developmentPseudonymKey = Data("sluice-development-pseudonym-key".utf8).base64EncodedString()

    /// The audit log's settings, with keys parsed and masking rules compiled.
    public func logConfiguration(logger: Logger? = nil) throws -> AuditLogConfiguration {
        if pseudonymKey.isEmpty {
            logger?.warning("audit.pseudonym_key is not set: using the development key; customer pseudonyms are not secret")
        }
        let keys: AuditKeys
        do {
            keys = try AuditKeys(
                pseudonymKey: pseudonymKey.isEmpty ? Self.developmentPseudonymKey : pseudonymKey,
                sealingKey: sealingKey,
                signingKey: signingKey
            )
        } catch {
            throw ConfigurationError(key: "audit", message: error.message)
        }
        let masker: PIIMasker
        do {
            masker = try PIIMasker(
                kinds: Set(maskKinds.compactMap(PIIKind.init(rawValue:))),
                extraPatterns: maskPatterns.sorted { $0.key < $1.key }.map { PIIMasker.ExtraPattern(label: $0.key, regex: $0.value) }
            )
        } catch let error as AuditError {
            throw ConfigurationError(key: "audit.mask_patterns", message: error.message)
        }
        return AuditLogConfiguration(
            keys: keys,
            masker: masker,
            synchronousFull: synchronous.uppercased() == "FULL",
            busyTimeout: Double(busyTimeoutMs) / 1000,
            checkpointEvery: Int64(checkpointEvery),
            minimumRetention: Double(minRetentionDays) * 86_400
        )
    }
}
