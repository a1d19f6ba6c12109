import ArgumentParser
import AuditLog
import Foundation

struct AuditPruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove rows recorded before a time (retention); refuses rows younger than audit.min_retention_days."
    )

    @OptionGroup var options: AuditOptions
    @Option(help: "Remove rows recorded before this time.") var before: TimeArgument

    func run() throws {
        let result = try options.openForWriting().prune(before: before.date)
        if let anchor = result.anchor {
            print("pruned \(result.removedRows) rows through seq \(anchor.prunedThroughSeq); anchor hash \(anchor.anchorHash)")
        } else {
            print("nothing to prune before \(CanonicalTime.format(before.date))")
        }
    }
}

struct AuditReviewCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "review", abstract: "Record a human reviewer's decision.")

    @OptionGroup var options: AuditOptions
    @Option(name: .customLong("request-id")) var requestID: String
    @Option(help: "Reviewer id.") var reviewer: String
    @Option(help: "approved, corrected or rejected.") var decision: ReviewRecord.Decision
    @Option(help: "Free-text note (masked like prompts).") var note: String?

    func run() throws {
        let configuration = try options.configuration().audit.logConfiguration()
        let review = try options.openForWriting().review(
            requestID: requestID, reviewer: reviewer, decision: decision, note: note.map(configuration.masker.mask))
        print("review \(review.seq) recorded for \(requestID): \(decision.rawValue)")
    }
}

struct AuditRevealCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reveal",
        abstract: "Print a request's original (unmasked) prompt; needs the sealing key."
    )

    @OptionGroup var options: AuditOptions
    @Option(name: .customLong("request-id")) var requestID: String
    @Option(help: "Base64 sealing key (default: audit.sealing_key).") var key: String?

    func run() throws {
        let database = try options.openForReading()
        guard let record = try database.record(requestID: requestID) else {
            throw ValidationError("request \(requestID) is not in the audit log")
        }
        guard let sealed = record.promptSealed else {
            throw ValidationError("request \(requestID) was stored without a sealed original (audit.sealing_key was not set)")
        }
        let sealingKey = try key ?? options.configuration().audit.sealingKey
        print(try AuditKeys.unseal(sealed, key: sealingKey))
    }
}

struct AuditCheckpointCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Sign and store the chain heads now (needs audit.signing_key)."
    )

    @OptionGroup var options: AuditOptions

    func run() throws {
        let checkpoint = try options.openForWriting().checkpoint()
        print("checkpoint \(checkpoint.id ?? 0): audit head \(checkpoint.auditHeadSeq), review head \(checkpoint.reviewHeadSeq), "
              + "public key \(checkpoint.publicKey ?? "-")")
    }
}

struct AuditKeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Print fresh pseudonym, sealing and signing keys as environment variables."
    )

    func run() {
        let keys = AuditKeys.generate()
        print("SLUICE_AUDIT_PSEUDONYM_KEY=\(keys.pseudonymKey)")
        print("SLUICE_AUDIT_SEALING_KEY=\(keys.sealingKey)")
        print("SLUICE_AUDIT_SIGNING_KEY=\(keys.signingKey)")
        print("# give auditors the public key for `sluice audit verify --public-key`:")
        print("# \(keys.publicKey)")
    }
}
