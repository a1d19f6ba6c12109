import Foundation
import Inference
import Testing

/// Small random models of each architecture, written by a script with `gguf` + numpy, whose
/// numpy reference forward pass is independent of Sluice's code.
@Suite("Architectures against a numpy reference forward pass")
struct SyntheticModelTests {
    struct Reference: Decodable {
        let tokens: [Int32]
        let logits: [[Double]]
    }

    /// Tolerance: float32 against float64 arithmetic over 3 layers — max |Δlogit| ≤ 1e-3 ×
    /// the largest |logit|. Every position is checked, once after a batched prefill of the
    /// whole prompt and once decoding token by token through the KV cache.
    @Test("logits match the reference at every position, prefilled and decoded", arguments: ["llama", "qwen2", "gemma3"])
    func matchesReference(architecture: String) throws {
        let path = Repository.temporaryFile("\(architecture).gguf")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let reference = try JSONDecoder().decode(Reference.self, from: Repository.runPython("synthetic_model.py", [architecture, path]))
        let model = try ModelRegistry.load(GGUFFile(path: path))
        #expect(model.config.architecture == architecture)

        func check(_ logits: [Float], position: Int, _ how: String) {
            let expected = reference.logits[position]
            let scale = expected.map(abs).max() ?? 1
            let worst = zip(logits, expected).map { abs(Double($0) - $1) }.max() ?? .infinity
            #expect(logits.count == expected.count)
            #expect(worst <= 1e-3 * scale, "\(architecture) \(how) position \(position): max error \(worst) of \(scale)")
        }

        // Token by token through the cache.
        let cache = model.makeCache(maxContext: 64)
        for (position, token) in reference.tokens.enumerated() {
            let logits = try model.forward([ForwardEntry(cache: cache, tokens: [token], wantsLogits: true)])[0]
            check(logits, position: position, "decode")
        }
        // Prefill prefixes of every length in one batch of independent sequences.
        let entries = (1...reference.tokens.count).map {
            ForwardEntry(cache: model.makeCache(maxContext: 64), tokens: Array(reference.tokens.prefix($0)), wantsLogits: true)
        }
        for (index, logits) in try model.forward(entries).enumerated() { check(logits, position: index, "prefill") }

        // The same with every other prefix prefilled in float (dequantized weights, sgemm):
        // dense and int8 entries mixed in one pass, logits returned in the entries' order.
        let mixed = (1...reference.tokens.count).map {
            ForwardEntry(cache: model.makeCache(maxContext: 64), tokens: Array(reference.tokens.prefix($0)), wantsLogits: true, dense: $0 % 2 == 1)
        }
        let mixedLogits = try model.forward(mixed)
        for (index, logits) in mixedLogits.enumerated() { check(logits, position: index, index % 2 == 0 ? "dense prefill" : "prefill") }

        // A dense entry's result does not depend on what else is in the pass.
        let whole = reference.tokens.count
        let alone = try model.forward([ForwardEntry(cache: model.makeCache(maxContext: 64), tokens: reference.tokens, wantsLogits: true, dense: whole % 2 == 1)])[0]
        #expect(alone == mixedLogits[whole - 1], "\(architecture): a dense prefill changed with its batch")
    }
}
