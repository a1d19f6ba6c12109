import ArgumentParser
import Foundation
import Inference

struct ModelBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Prefill tokens/s (512-token prompt), aggregate decode tokens/s at batch 1/4/16/32, peak RSS."
    )

    @Option(help: "The GGUF file.") var model: String
    @Option(help: "Decode steps per batch size (after a 64-token prompt per sequence).") var steps = 32
    @Option(help: "Batch sizes to measure.") var batches = "1,4,16,32"
    @Option(help: "Threads (default: one per core).") var threads: Int?
    @Option(help: "Repetitions of each measurement; the median is reported (this machine's timings are noisy).") var repetitions = 3
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        ComputePool.reuseLargeAllocations()
        if let threads { ComputePool.setThreads(threads) }
        let loaded = try ModelRegistry.load(GGUFFile(path: model))
        func progress(_ text: String) { if !json { FileHandle.standardError.write(Data("\r\u{1B}[K\(text)".utf8)) } }

        // Prefill: one 512-token prompt, in float (sgemm, as the generator prefills long
        // prompts) and with int8 products (as it prefills short ones), for comparison.
        let prompt = (0..<512).map { Int32(1000 + $0 % 5000) }
        func median(_ measure: () throws -> Double) rethrows -> Double {
            let values = try (0..<max(1, repetitions)).map { _ in try measure() }.sorted()
            return values[values.count / 2]
        }
        func prefill(dense: Bool) throws -> Double {
            progress("prefill 512 tokens (\(dense ? "sgemm" : "int8"))…")
            let cache = loaded.makeCache(maxContext: 1024)
            let start = ContinuousClock.now
            _ = try loaded.forward([ForwardEntry(cache: cache, tokens: prompt, wantsLogits: true, dense: dense)])
            return 512 / (ContinuousClock.now - start).benchSeconds
        }
        let prefillInt8 = try median { try prefill(dense: false) }
        let prefill = try median { try prefill(dense: true) }

        var decode: [String: Double] = [:]
        for batch in batches.split(separator: ",").compactMap({ Int($0) }) {
            decode[String(batch)] = try median {
                // Each sequence first holds a 64-token prompt (as llama-batched-bench -npp 64).
                let caches = (0..<batch).map { _ in loaded.makeCache(maxContext: 64 + steps + 8) }
                _ = try loaded.forward(caches.enumerated().map { index, cache in
                    ForwardEntry(cache: cache, tokens: [Int32(2)] + (1..<64).map { Int32(1000 + (index * 64 + $0) % 5000) }, wantsLogits: true)
                })
                let start = ContinuousClock.now
                for step in 0..<steps {
                    progress("decode batch \(batch): step \(step + 1)/\(steps)")
                    _ = try loaded.forward(caches.map { ForwardEntry(cache: $0, tokens: [Int32(1000 + step)], wantsLogits: true) })
                }
                return Double(batch * steps) / (ContinuousClock.now - start).benchSeconds
            }
        }
        progress("")
        let rss = peakRSSBytes()
        if json {
            let object: [String: Any] = ["prefill_tokens_per_s": prefill, "prefill_int8_tokens_per_s": prefillInt8, "decode_tokens_per_s": decode, "peak_rss_bytes": rss]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print(String(format: "prefill (512 tokens): %8.1f tokens/s (sgemm; int8: %.1f)", prefill, prefillInt8))
            for (batch, rate) in decode.sorted(by: { Int($0.key)! < Int($1.key)! }) {
                print(String(format: "decode batch %3@:     %8.1f tokens/s (aggregate)", batch, rate))
            }
            print(String(format: "peak RSS:             %8.1f MB", Double(rss) / 1e6))
        }
    }

    /// VmHWM from /proc/self/status.
    private func peakRSSBytes() -> Int {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") })
        else { return 0 }
        return (Int(line.split(separator: " ")[1]) ?? 0) * 1024
    }
}

extension Duration {
    var benchSeconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
