import Foundation
import Hummingbird
import ServiceLifecycle

/// `/metrics` (Prometheus text), `/healthz` (the process serves requests) and `/readyz`
/// (model loaded and partitions assigned) over HTTP. A `Service`: it serves until the
/// group's graceful shutdown reaches it (last, so probes see the drain).
struct HealthEndpoint: Service, CustomStringConvertible {
    var description: String { "http endpoint :\(port)" }
    let metrics: WorkerMetrics
    let isReady: @Sendable () -> Bool
    let health: HealthMonitor
    let port: Int

    func run() async throws {
        let router = Router()
        let metrics = self.metrics
        let isReady = self.isReady
        let health = self.health
        @Sendable func failing() -> [(HealthMonitor.Condition, String)] {
            let conditions = health.failing()
            for condition in HealthMonitor.Condition.allCases {
                metrics.health(condition).set(Double(conditions.contains { $0.0 == condition } ? 1 : 0))
            }
            return conditions
        }
        router.get("metrics") { _, _ -> Response in
            _ = failing()
            return Response(
                status: .ok,
                headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                body: ResponseBody(byteBuffer: ByteBuffer(bytes: metrics.render())))
        }
        router.get("healthz") { _, _ -> Response in
            let conditions = failing()
            guard conditions.isEmpty else {
                let text = conditions.map { "unhealthy: \($0.0.rawValue): \($0.1)\n" }.joined()
                return Response(status: .serviceUnavailable, body: ResponseBody(byteBuffer: ByteBuffer(string: text)))
            }
            return Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "ok\n")))
        }
        router.get("readyz") { _, _ -> Response in
            if health.auditFailing {
                return Response(status: .serviceUnavailable, body: ResponseBody(byteBuffer: ByteBuffer(string: "not ready: audit writes are failing\n")))
            }
            return isReady()
                ? Response(status: .ok, body: ResponseBody(byteBuffer: ByteBuffer(string: "ready\n")))
                : Response(status: .serviceUnavailable, body: ResponseBody(byteBuffer: ByteBuffer(string: "not ready: no partitions assigned\n")))
        }
        let app = Application(router: router, configuration: .init(address: .hostname("0.0.0.0", port: port)))
        try await app.run()
    }
}
