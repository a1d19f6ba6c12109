import Crypto
import Foundation

/// The keys the audit log uses, parsed from configuration (base64 text).
public struct AuditKeys: Sendable {
    /// HMAC-SHA256 key that turns customer references into stable pseudonyms.
    public var pseudonymKey: SymmetricKey {
        didSet { pseudonymMAC = HMAC(key: pseudonymKey) }
    }
    /// The HMAC keyed once (its key schedule was a measurable part of each audit row):
    /// copied per pseudonym, a value whose digest state is a plain struct.
    private var pseudonymMAC: HMAC<SHA256>
    /// AES-GCM key that seals the original prompt for authorised review (optional).
    public var sealingKey: SymmetricKey?
    /// Ed25519 key that signs chain checkpoints (optional, strongly recommended).
    public var signingKey: Curve25519.Signing.PrivateKey?

    public init(pseudonymKey: SymmetricKey, sealingKey: SymmetricKey? = nil, signingKey: Curve25519.Signing.PrivateKey? = nil) {
        self.pseudonymKey = pseudonymKey
        self.pseudonymMAC = HMAC(key: pseudonymKey)
        self.sealingKey = sealingKey
        self.signingKey = signingKey
    }

    /// - Parameters:
    ///   - pseudonymKey: base64, at least 16 bytes.
    ///   - sealingKey: base64 of 32 bytes (AES-256-GCM), or empty.
    ///   - signingKey: base64 of a 32-byte Ed25519 private key, or empty.
    public init(pseudonymKey: String, sealingKey: String = "", signingKey: String = "") throws(AuditError) {
        guard let pseudonym = Data(base64Encoded: pseudonymKey), pseudonym.count >= 16 else {
            throw AuditError(code: .key, message: "the pseudonym key must be base64 of at least 16 bytes")
        }
        self.pseudonymKey = SymmetricKey(data: pseudonym)
        self.pseudonymMAC = HMAC(key: self.pseudonymKey)
        if !sealingKey.isEmpty {
            guard let sealing = Data(base64Encoded: sealingKey), sealing.count == 32 else {
                throw AuditError(code: .key, message: "the sealing key must be base64 of 32 bytes")
            }
            self.sealingKey = SymmetricKey(data: sealing)
        }
        if !signingKey.isEmpty {
            guard let raw = Data(base64Encoded: signingKey),
                  let key = try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)
            else {
                throw AuditError(code: .key, message: "the signing key must be base64 of a 32-byte Ed25519 private key")
            }
            self.signingKey = key
        }
    }

    /// Fresh random keys (for `sluice audit keygen` and tests).
    public static func generate() -> (pseudonymKey: String, sealingKey: String, signingKey: String, publicKey: String) {
        let signing = Curve25519.Signing.PrivateKey()
        return (
            SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() },
            SymmetricKey(size: .bits256).withUnsafeBytes { Data($0).base64EncodedString() },
            signing.rawRepresentation.base64EncodedString(),
            signing.publicKey.rawRepresentation.base64EncodedString()
        )
    }

    /// The customer reference's pseudonym: hex HMAC-SHA256 under `pseudonymKey`.
    public func pseudonym(for customerRef: String) -> String {
        var mac = pseudonymMAC
        mac.update(data: Array(customerRef.utf8))
        return mac.finalize().hexString
    }

    /// The text sealed under `sealingKey`, or nil without one.
    func seal(_ text: String) throws -> Data? {
        guard let sealingKey else { return nil }
        return try AES.GCM.seal(Data(text.utf8), using: sealingKey).combined
    }

    /// Recovers sealed text (`sluice audit reveal`).
    public static func unseal(_ sealed: Data, key: String) throws -> String {
        guard let raw = Data(base64Encoded: key), raw.count == 32 else {
            throw AuditError(code: .key, message: "the sealing key must be base64 of 32 bytes")
        }
        do {
            let box = try AES.GCM.SealedBox(combined: sealed)
            return String(decoding: try AES.GCM.open(box, using: SymmetricKey(data: raw)), as: UTF8.self)
        } catch {
            throw AuditError(code: .key, message: "cannot open the sealed prompt with this key (wrong key or damaged data)")
        }
    }
}
