import AuditLog
import Crypto
import Foundation
import Testing

@Suite("Audit append: idempotency, privacy and faults")
struct AppendTests {
    @Test("appending the same request id twice leaves one row and returns the stored one")
    func replay() throws {
        let database = try AuditFixture.newDatabase()
        let first = try database.append([AuditFixture.entry(1)])
        var replayed = AuditFixture.entry(1)
        replayed.response = "a different answer after a crash"
        let second = try database.append([replayed, AuditFixture.entry(2), AuditFixture.entry(2)])
        #expect(try database.count() == 2)
        guard case .duplicate(let stored) = second[0], case .appended = second[1], case .duplicate = second[2] else {
            Issue.record("unexpected outcomes \(second)")
            return
        }
        #expect(stored == first[0].record)
        #expect(stored.responseMasked == "answer 1")
        #expect(try database.verify().isIntact)
        #expect(try database.auditedRequestIDs(among: ["r1", "r2", "r3"]) == ["r1", "r2"])
    }

    @Test("raw PII and customer references never reach the file; the prompt hash and sealed original do")
    func privacy() throws {
        let database = try AuditFixture.newDatabase()
        let prompt = "Card 4111 1111 1111 1111 lost, call 13812345678"
        try database.append([AuditFixture.entry(1, prompt: prompt)])
        let record = try #require(try database.record(requestID: "r1"))
        #expect(record.promptMasked == "Card [CARD ****1111] lost, call [PHONE]")
        #expect(record.promptSHA256 == "219198e7cc1486b14ead239583797286d4fd1058660694d5af7f5df5cbb84232")  // sha256sum of the prompt
        #expect(try record.customerPseudonym == AuditFixture.configurationKeys().pseudonym(for: "customer-1"))
        // The keyed HMAC is reused by copy: each pseudonym must still be the one-shot HMAC of its reference alone.
        let keys = try AuditFixture.configurationKeys()
        for reference in ["customer-1", "customer-2", "customer-1"] {
            let expected = HMAC<SHA256>.authenticationCode(for: Data(reference.utf8), using: keys.pseudonymKey).map { String(format: "%02x", $0) }.joined()
            #expect(keys.pseudonym(for: reference) == expected)
        }
        #expect(try AuditKeys.unseal(#require(record.promptSealed), key: AuditFixture.keys.sealingKey) == prompt)
        for suffix in ["", "-wal"] {
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: database.path + suffix))) ?? Data()
            #expect(bytes.range(of: Data("4111 1111 1111 1111".utf8)) == nil)
            #expect(bytes.range(of: Data("13812345678".utf8)) == nil)
            #expect(bytes.range(of: Data("customer-1".utf8)) == nil)
        }
    }

    @Test("a locked database surfaces as .locked, and the batch succeeds once the lock is gone")
    func locked() throws {
        let database = try AuditFixture.newDatabase(configuration: AuditFixture.configuration(busyTimeout: 0.2))
        try database.append([AuditFixture.entry(1)])
        // Another process holds the write lock until its stdin closes.
        let holder = Process()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        holder.arguments = [database.path]
        let input = Pipe()
        let output = Pipe()
        holder.standardInput = input
        holder.standardOutput = output
        try holder.run()
        input.fileHandleForWriting.write(Data("BEGIN IMMEDIATE;\nSELECT 'locked';\n".utf8))
        // Wait for the holder to say it has the lock (an event, not a sleep).
        var seen = ""
        while !seen.contains("locked") {
            seen += String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
        }
        do {
            try database.append([AuditFixture.entry(2)])
            Issue.record("append succeeded while another process held the write lock")
        } catch {
            #expect(error.code == .locked)
            #expect(error.isRetriable)
        }
        try input.fileHandleForWriting.close()
        holder.waitUntilExit()
        try database.append([AuditFixture.entry(2)])
        #expect(try database.count() == 2)
        #expect(try database.verify().isIntact)
    }

    @Test("a full database (page quota) surfaces as .full; the failed batch is not half-written")
    func fullByQuota() throws {
        let database = try AuditFixture.newDatabase(configuration: AuditFixture.configuration(maxPageCount: 40))
        var appended = 0
        var failure: AuditError?
        for start in stride(from: 1, to: 10_000, by: 50) {
            do {
                try database.append((start..<(start + 50)).map { AuditFixture.entry($0, prompt: String(repeating: "long question ", count: 20)) })
                appended += 50
            } catch {
                failure = error
                break
            }
        }
        let error = try #require(failure, "the quota was never hit")
        #expect(error.code == .full, "\(error)")
        #expect(try database.count() == appended, "whole batches only")
        #expect(try database.verify().isIntact)
    }

    @Test("a full disk (tiny tmpfs) and a read-only filesystem surface as typed errors")
    func fullAndReadOnlyDisk() throws {
        let mountPoint = try AuditFixture.temporaryDirectory()
        try #require(try shell("mount -t tmpfs -o size=192k tmpfs '\(mountPoint.path)'") == 0, "mounting a tmpfs needs root")
        defer { _ = try? shell("umount -l '\(mountPoint.path)'") }
        let path = mountPoint.appendingPathComponent("audit.sqlite").path
        let database = try AuditDatabase(path: path, configuration: AuditFixture.configuration())
        var failure: AuditError?
        var appended = 0
        for start in stride(from: 1, to: 100_000, by: 50) {
            do {
                try database.append((start..<(start + 50)).map { AuditFixture.entry($0, prompt: String(repeating: "long question ", count: 20)) })
                appended += 50
            } catch {
                failure = error
                break
            }
        }
        let full = try #require(failure, "the disk never filled")
        #expect([.full, .io].contains(full.code), "\(full)")
        #expect(try database.count() == appended)

        // The same files seen through a read-only bind mount (remounting the tmpfs itself
        // read-only fails while the database holds it open).
        let readOnlyView = try AuditFixture.temporaryDirectory()
        try #require(try shell("mount --bind '\(mountPoint.path)' '\(readOnlyView.path)' && mount -o remount,bind,ro '\(readOnlyView.path)'") == 0)
        defer { _ = try? shell("umount -l '\(readOnlyView.path)'") }
        do {
            let readOnly = try AuditDatabase(path: readOnlyView.appendingPathComponent("audit.sqlite").path, configuration: AuditFixture.configuration())
            try readOnly.append([AuditFixture.entry(999_999)])
            Issue.record("append succeeded on a read-only filesystem")
        } catch let error as AuditError {
            #expect([.readOnly, .io, .cannotOpen].contains(error.code), "\(error)")
        }
        #expect(try database.count() == appended, "nothing was lost")
    }

    @Test("the write-ahead log is copied into the file at the configured length, not SQLite's 1,000 pages")
    func walCheckpointLength() throws {
        // The log file is reused from its start after each checkpoint, so its size is the
        // longest stretch between two: about the configured pages (plus one batch), or all of
        // the appends when that is longer than they wrote.
        func walPages(checkpointingAt pages: Int) throws -> Int {
            var configuration = try AuditFixture.configuration()
            configuration.walAutocheckpointPages = pages
            let database = try AuditFixture.newDatabase(configuration: configuration)
            for start in stride(from: 0, to: 2_000, by: 64) {
                try database.append((start..<min(start + 64, 2_000)).map { AuditFixture.entry($0, prompt: String(repeating: "long question \($0) ", count: 100)) })
            }
            let attributes = try FileManager.default.attributesOfItem(atPath: database.path + "-wal")
            return ((attributes[.size] as? Int) ?? 0) / (4096 + 24)
        }
        let short = try walPages(checkpointingAt: 100)
        let long = try walPages(checkpointingAt: 10_000)
        #expect(short < 400, "checkpointed every 100 pages, the log held \(short)")
        #expect(long > 2_000, "checkpointed every 10,000 pages, the log held only \(long)")
        #expect(AuditLogConfiguration(keys: try AuditFixture.configurationKeys(), masker: try PIIMasker()).walAutocheckpointPages == 10_000)
    }

    @Test("a file that is not a database is reported as corrupt")
    func notADatabase() throws {
        let path = try AuditFixture.temporaryDirectory().appendingPathComponent("audit.sqlite").path
        try Data(repeating: 0x42, count: 8192).write(to: URL(fileURLWithPath: path))
        do {
            _ = try AuditDatabase(path: path, configuration: AuditFixture.configuration())
            Issue.record("opened garbage as an audit database")
        } catch let error as AuditError {
            #expect(error.code == .corrupt, "\(error)")
        }
    }
}

extension AuditFixture {
    static func configurationKeys() throws -> AuditKeys {
        try AuditKeys(pseudonymKey: keys.pseudonymKey)
    }
}
