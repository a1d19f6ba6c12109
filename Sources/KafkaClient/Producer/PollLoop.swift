import Dispatch
import Synchronization

/// Polls a producer handle for delivery reports on its own dispatch queue until stopped.
final class PollLoop: Sendable {
    private let running = Atomic(true)
    private let stopped = DispatchSemaphore(value: 0)

    init(client: RDKafkaClient, label: String) {
        DispatchQueue(label: label).async { [self] in
            while running.load(ordering: .acquiring) {
                client.poll(timeoutMs: 100)
            }
            stopped.signal()
        }
    }

    /// Asks the loop to stop; it notices within one poll timeout.
    func requestStop() {
        running.store(false, ordering: .releasing)
    }

    /// Stops the loop and waits until it has.
    func stop() async {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        _ = try? await runBlocking { [stopped] in stopped.wait() }
    }
}
