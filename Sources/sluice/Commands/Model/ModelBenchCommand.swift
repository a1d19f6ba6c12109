import ArgumentParser
import Foundation
import Inference
import Kernels

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

        // Prefill: one 512-token prompt with int8 products (as the generator prefills by
        // default) and in float (the dense kernel, for prompts of at least
        // `densePrefillMinimum` tokens where that is set), for comparison.
        let prompt = (0..<512).map { Int32(1000 + $0 % 5000) }
        func median(_ measure: () throws -> Double) rethrows -> Double {
            let values = try (0..<max(1, repetitions)).map { _ in try measure() }.sorted()
            return values[values.count / 2]
        }
        func measurePrefill(dense: Bool) throws -> Double {
            progress("prefill 512 tokens (\(dense ? "dense" : "int8"))…")
            let cache = loaded.makeCache(maxContext: 1024)
            let start = ContinuousClock.now
            _ = try loaded.forward([ForwardEntry(cache: cache, tokens: prompt, wantsLogits: true, dense: dense)])
            return 512 / (ContinuousClock.now - start).benchSeconds
        }
        let prefill = try median { try measurePrefill(dense: false) }
        let prefillDense = try median { try measurePrefill(dense: true) }

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
        let (cpu, flags) = Self.cpu()
        let path = String(cString: sl_simd_level())
        if json {
            let object: [String: Any] = [
                "prefill_tokens_per_s": prefill, "prefill_dense_tokens_per_s": prefillDense, "decode_tokens_per_s": decode, "peak_rss_bytes": rss,
                "cpu": cpu, "cpu_flags": flags, "kernel_path": path, "threads": ComputePool.threads,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            print("cpu: \(cpu); flags: \(flags.joined(separator: " ")); kernel path: \(path); threads: \(ComputePool.threads)")
            print(String(format: "prefill (512 tokens): %8.1f tokens/s (int8; dense float: %.1f)", prefill, prefillDense))
            for (batch, rate) in decode.sorted(by: { Int($0.key)! < Int($1.key)! }) {
                print(String(format: "decode batch %3@:     %8.1f tokens/s (aggregate)", batch, rate))
            }
            print(String(format: "peak RSS:             %8.1f MB", Double(rss) / 1e6))
        }
    }

    /// The CPU's model name and the instruction-set flags the kernels care about (/proc/cpuinfo).
    static func cpu() -> (String, [String]) {
        guard let info = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) else { return ("unknown", []) }
        let lines = info.split(separator: "\n")
        func field(_ name: String) -> String? {
            lines.first { $0.hasPrefix(name) }.flatMap { $0.split(separator: ":", maxSplits: 1).last }.map { $0.trimmingCharacters(in: .whitespaces) }
        }
        let relevant = ["avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni"]
        let present = Set((field("flags") ?? "").split(separator: " ").map(String.init))
        return (field("model name") ?? "unknown", relevant.filter(present.contains))
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
