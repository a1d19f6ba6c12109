import Foundation
import Hummingbird

/// `/metrics` (Prometheus text), `/healthz` (the process serves requests) and `/readyz`
/// (model loaded and partitions assigned) over HTTP.
struct HealthEndpoint {
    let metrics: WorkerMetrics
    let isReady: @Sendable () -> Bool
    /// Why the process can no longer serve (a fatal client error), if it cannot.
    let fatalReason: @Sendable () -> String?
    let port: Int

    func run() async throws {
        let router = Router()
        let metrics = self.metrics
        let isReady = self.isReady
        let fatalReason = self.fatalReason
        router.get("metrics") { _, _ -> Response in
            Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.render())))
        }
        router.get("healthz") { _, _ -> Response in
            if let reason = fatalReason() {
                return Response(status: .serviceUnavailable, body: ResponseBody(byteBuffer: ByteBuffer(string: "unhealthy: \(reason)\n")))
            }
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        router.get("readyz") { _, _ -> Response in
            isReady()
                ? Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "ready\n")))
                : Response(status: .serviceUnavailable, body: ResponseBody(byteBuffer: ByteBuffer(string: "not ready: no partitions assigned\n")))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("0.0.0.0", port: port)))
        try await app.run()
    }
}
