import AuditLog
import Foundation
import KafkaClient
import Knowledge
import Testing

/// Runs real `sluice run` processes against the real broker, each test on its own topics,
/// group and audit file, and talks to them as producers would.
final class WorkerHarness: @unchecked Sendable {
    let prefix = "wt-\(UUID().uuidString.prefix(8).lowercased())"
    let brokers: String
    let binary: String
    let directory: URL
    let model: String
    var requestsTopic: String { "\(prefix).requests" }
    var repliesTopic: String { "\(prefix).replies" }
    var escalationsTopic: String { "\(prefix).escalations" }
    var deadLettersTopic: String { "\(prefix).dlq" }
    var allTopics: [String] { [requestsTopic, repliesTopic, escalationsTopic, deadLettersTopic] }
    var auditPath: String { directory.appendingPathComponent("audit.sqlite").path }
    /// The workers' knowledge base: the shipped sample (`Config/knowledge-base.jsonl`), imported at start.
    var knowledgePath: String { directory.appendingPathComponent("knowledge.sqlite").path }
    static let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent()
    private var processes: [String: Process] = [:]
    private var logs: [String: LogWatcher] = [:]

    struct Missing: Error, CustomStringConvertible { let description: String }

    /// - Parameter createTopics: false for the mock cluster, whose topics are created through its own API.
    init(model: String = "real", partitions: Int32 = 3, brokers override: String? = nil, createTopics: Bool = true) async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let brokers = override ?? environment["SLUICE_TEST_BROKERS"], let binary = environment["SLUICE_BIN"] else {
            throw Missing(description: "SLUICE_TEST_BROKERS and SLUICE_BIN must be set: run `make test`")
        }
        self.brokers = brokers
        self.binary = binary
        self.model = model == "real"
            ? URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
                .deletingLastPathComponent().appendingPathComponent("models/gemma-3-270m-q4_k_m.gguf").path
            : model
        directory = FileManager.default.temporaryDirectory.appendingPathComponent(prefix)
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try importKnowledge(String(contentsOf: Self.repositoryRoot.appendingPathComponent("Config/knowledge-base.jsonl"), encoding: .utf8))
        guard createTopics else { return }
        let admin = try KafkaAdmin(configuration: client)
        _ = try await admin.createTopics([requestsTopic, repliesTopic, escalationsTopic, deadLettersTopic].map {
            KafkaTopicSpec(name: $0, partitions: partitions)
        })
    }

    /// Imports the shipped knowledge base with the hotline changed to 96666 (the bank edits an
    /// answer); returns the new version.
    func importChangedHotline() throws -> String {
        let shipped = try String(contentsOf: Self.repositoryRoot.appendingPathComponent("Config/knowledge-base.jsonl"), encoding: .utf8)
        let changed = shipped.split(separator: "\n").map { line -> String in
            line.contains(#""id":"customer-hotline""#)
                ? #"{"id":"customer-hotline","title":"Customer service hotline","text":"The customer service hotline is 96666, available 24 hours a day.","lang":"en","questions":["What is the customer service number?"],"tags":["contact"]}"#
                : String(line)
        }.joined(separator: "\n")
        return try importKnowledge(changed)
    }

    /// Replaces the knowledge base's contents (as `sluice kb import` does); returns the new version.
    @discardableResult
    func importKnowledge(_ jsonl: String) throws -> String {
        try KnowledgeBase(path: knowledgePath).importEntries(KnowledgeEntry.parseJSONL(jsonl)).version
    }

    var client: KafkaClientConfiguration { KafkaClientConfiguration(bootstrapServers: brokers.split(separator: ",").map(String.init)) }

    /// Starts a worker and returns once it owns partitions (its log says so).
    func startWorker(_ name: String, extra: [String: String] = [:], waitForAssignment: Bool = true) async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["run", "--worker-id", name]
        var environment = ProcessInfo.processInfo.environment
        environment.merge([
            "SLUICE_KAFKA_BROKERS": brokers,
            "SLUICE_KAFKA_GROUP_ID": "\(prefix)-group",
            "SLUICE_KAFKA_SESSION_TIMEOUT_MS": "6000",
            "SLUICE_TOPICS_REQUESTS": requestsTopic,
            "SLUICE_TOPICS_REPLIES": repliesTopic,
            "SLUICE_TOPICS_ESCALATIONS": escalationsTopic,
            "SLUICE_TOPICS_DEAD_LETTERS": deadLettersTopic,
            "SLUICE_AUDIT_DB": auditPath,
            "SLUICE_AUDIT_ALLOW_DEVELOPMENT_KEYS": "true",
            "SLUICE_KNOWLEDGE_DB": knowledgePath,
            "SLUICE_WORKER_MODEL": model,
            "SLUICE_WORKER_MODEL_SHA256": model.hasSuffix(".gguf") ? "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818" : "",
            "SLUICE_WORKER_DEFAULT_MAX_TOKENS": "6",
            "SLUICE_WORKER_COMMIT_INTERVAL_MS": "100",
            "SLUICE_WORKER_METRICS_PORT": "0",
            // Off unless a test is about it: the others exercise inference with one repeated prompt.
            "SLUICE_CACHE_ENABLED": "false",
        ]) { _, new in new }
        environment.merge(extra) { _, new in new }
        process.environment = environment
        process.currentDirectoryURL = directory
        let watcher = LogWatcher()
        let pipe = Pipe()
        pipe.fileHandleForReading.readabilityHandler = { handle in watcher.append(handle.availableData) }
        process.standardOutput = pipe
        process.standardError = pipe
        process.terminationHandler = { _ in watcher.processExited() }
        try process.run()
        processes[name] = process
        logs[name] = watcher
        if waitForAssignment { try await waitForLog(name, containing: "partitions assigned") }
    }

    /// Waits until the worker's output contains `text` (woken by each new chunk of output).
    func waitForLog(_ name: String, containing text: String, timeout: Double = 90) async throws {
        let watcher = logs[name]!
        let found = try await withDeadlineThrowing(timeout, "'\(text)' from \(name)") { await watcher.wait(for: text) }
        guard found else { throw Missing(description: "worker \(name) exited before logging '\(text)': \(log(name))") }
    }

    func log(_ name: String) -> String { logs[name]?.text ?? "" }

    func signal(_ name: String, _ signal: Int32) { if let pid = processes[name]?.processIdentifier { kill(pid, signal) } }

    /// Waits for a worker to exit and returns its status.
    func waitForExit(_ name: String, timeout: Double = 60) async throws -> Int32 {
        let watcher = logs[name]!
        let process = processes[name]!
        _ = try await withDeadlineThrowing(timeout, "\(name) to exit") { await watcher.wait(for: nil) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Runs a short `sluice` command against this harness's broker and topics.
    func runSluice(_ arguments: [String], withBrokers: Bool = true) async throws -> (status: Int32, stdout: Data) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = arguments + (withBrokers ? ["--brokers", brokers] : [])
        process.environment = ProcessInfo.processInfo.environment.merging([
            "SLUICE_TOPICS_REQUESTS": requestsTopic, "SLUICE_TOPICS_REPLIES": repliesTopic,
            "SLUICE_TOPICS_ESCALATIONS": escalationsTopic, "SLUICE_TOPICS_DEAD_LETTERS": deadLettersTopic,
        ]) { _, new in new }
        process.currentDirectoryURL = directory
        let output = Pipe()
        process.standardOutput = output
        try process.run()
        return try await offThePool {
            let data = output.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            return (process.terminationStatus, data)
        }
    }

    func isRunning(_ name: String) -> Bool { processes[name]?.isRunning == true }

    func processes(_ name: String) -> Process? { processes[name] }

    func stopAll() {
        for process in processes.values where process.isRunning { kill(process.processIdentifier, SIGKILL) }
    }

    deinit { stopAll() }

    // MARK: - Traffic

    func send(_ values: [(key: String?, value: [UInt8], headers: [KafkaHeader])], maxMessageBytes: Int? = nil) async throws {
        var configuration = KafkaProducerConfiguration(client: client, linger: .milliseconds(2))
        if let maxMessageBytes { configuration.properties["message.max.bytes"] = String(maxMessageBytes) }
        let producer = try KafkaProducer(configuration: configuration)
        for item in values {
            try await producer.send(KafkaProducerMessage(topic: requestsTopic, key: item.key.map { Array($0.utf8) }, value: item.value, headers: item.headers))
        }
        try await producer.close()
    }

    static func request(_ id: String, prompt: String = "What is the annual fee of the gold card?", extra: [String: Any] = [:]) -> [UInt8] {
        var body: [String: Any] = ["request_id": id, "prompt": prompt, "conversation_id": "c-\(id)", "customer_ref": "cust-\(id)"]
        body.merge(extra) { _, new in new }
        return Array(try! JSONSerialization.data(withJSONObject: body))
    }

    /// Reads `count` records of `topic` from the beginning.
    func read(_ topic: String, count: Int, timeout: Double = 240) async throws -> [KafkaConsumerMessage] {
        try await read(topic, timeout: timeout) { $0.count >= count }
    }

    /// Reads records of `topic` from the beginning until `done` says so.
    func read(_ topic: String, timeout: Double = 240, until done: @escaping @Sendable ([KafkaConsumerMessage]) -> Bool) async throws -> [KafkaConsumerMessage] {
        let consumer = try KafkaConsumer(configuration: KafkaConsumerConfiguration(client: client, groupID: "\(prefix)-reader-\(UUID())", sessionTimeout: .seconds(6)))
        let admin = try KafkaAdmin(configuration: client)
        let partitions = try #require(try await admin.metadata().topic(named: topic)).partitions
        try consumer.assign(partitions.map { KafkaTopicPartitionOffset(topic: topic, partition: $0.id, offset: 0) })
        defer { Task { try? await consumer.close() } }
        return try await withDeadlineThrowing(timeout, "records on \(topic)") {
            var result: [KafkaConsumerMessage] = []
            for try await message in consumer.messages {
                result.append(message)
                if done(result) { break }
            }
            return result
        }
    }

    /// JSON objects of reply values.
    static func objects(_ messages: [KafkaConsumerMessage]) -> [[String: Any]] {
        messages.compactMap { (try? JSONSerialization.jsonObject(with: Data($0.value))) as? [String: Any] }
    }

    func auditDatabase() throws -> AuditDatabase { try AuditDatabase.openForReading(path: auditPath) }

    /// The audit log once it holds `count` rows. A reply is published just before its audit
    /// row is written (by another process), so tests wait for the rows; there is no event to
    /// await across processes, hence a bounded poll.
    func auditDatabase(rows count: Int, timeout: Double = 60) async throws -> AuditDatabase {
        let path = auditPath
        return try await withDeadlineThrowing(timeout, "\(count) audit rows") {
            while true {
                if let database = try? AuditDatabase.openForReading(path: path), (try? database.count()) ?? 0 >= count { return database }
                try await Task.sleep(for: .milliseconds(50))
            }
        }
    }
}

struct DeadlineExceeded: Error, CustomStringConvertible {
    let what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Runs `body`, failing after `seconds` (a deadline, not a synchronisation).
func withDeadlineThrowing<T: Sendable>(_ seconds: Double, _ what: String, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: .seconds(seconds))
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else { throw DeadlineExceeded(what: what) }
        return value
    }
}

/// Runs blocking work (a child process waited for, a pipe read to its end) on a Dispatch thread, never on
/// Swift's cooperative pool: that pool has one thread per core, and a test blocking it can starve the
/// in-process HTTP server or worker it is waiting for.
func offThePool<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        DispatchQueue.global().async { continuation.resume(with: Result { try body() }) }
    }
}

/// Collects a process's output and wakes waiters when a text appears or the process exits.
final class LogWatcher: @unchecked Sendable {  // behind `lock`
    private let lock = NSLock()
    private var buffer = Data()
    private var exited = false
    private var waiters: [(id: UUID, text: String?, continuation: CheckedContinuation<Bool, Never>)] = []

    var text: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: buffer, as: UTF8.self)
    }

    func append(_ data: Data) {
        lock.lock()
        buffer.append(data)
        let ready = takeReady()
        lock.unlock()
        for (waiter, found) in ready { waiter.resume(returning: found) }
    }

    func processExited() {
        lock.lock()
        exited = true
        let ready = takeReady()
        lock.unlock()
        for (waiter, found) in ready { waiter.resume(returning: found) }
    }

    /// True once `text` appeared; false if the process exited first. With nil: waits for exit.
    func wait(for text: String?) async -> Bool {
        let id = UUID()
        return await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                lock.lock()
                waiters.append((id, text, continuation))
                let ready = takeReady()
                lock.unlock()
                for (waiter, found) in ready { waiter.resume(returning: found) }
            }
        } onCancel: {
            lock.lock()
            let cancelled = waiters.filter { $0.id == id }
            waiters.removeAll { $0.id == id }
            lock.unlock()
            for waiter in cancelled { waiter.continuation.resume(returning: false) }
        }
    }

    /// Called with the lock held.
    private func takeReady() -> [(CheckedContinuation<Bool, Never>, Bool)] {
        let output = String(decoding: buffer, as: UTF8.self)
        var ready: [(CheckedContinuation<Bool, Never>, Bool)] = []
        waiters.removeAll { waiter in
            if let text = waiter.text, output.contains(text) {
                ready.append((waiter.continuation, true))
                return true
            }
            if exited {
                ready.append((waiter.continuation, waiter.text == nil))
                return true
            }
            return false
        }
        return ready
    }
}

/// A TCP port nothing listens on now (the kernel picks it; released before use).
func freeLocalPort() throws -> Int {
    let socket = Foundation.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard socket >= 0 else { throw WorkerHarness.Missing(description: "socket() failed") }
    defer { close(socket) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let bound = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, length) == 0 && getsockname(socket, $0, &length) == 0 }
    }
    guard bound else { throw WorkerHarness.Missing(description: "could not find a free port") }
    return Int(UInt16(bigEndian: address.sin_port))
}
