import Foundation
import Inference
import Kernels
import Testing

/// The real Gemma 3 270M file (installed by ops/bootstrap), loaded once per test process.
enum RealModel {
    static let shared: Result<any LanguageModel, any Error> = Result {
        try ModelRegistry.load(GGUFFile(path: Repository.model))
    }

    static func load() throws -> any LanguageModel { try shared.get() }

    struct Goldens<Case: Decodable>: Decodable {
        let reference: String
        let cases: [Case]
    }

    static func goldens<Case: Decodable>(_ name: String, as: Case.Type) throws -> [Case] {
        let url = Repository.root.appendingPathComponent("Tests/InferenceTests/Goldens/\(name)")
        return try JSONDecoder().decode(Goldens<Case>.self, from: Data(contentsOf: url)).cases
    }
}

@Suite("Gemma 3 270M: tokenizer and generation against llama.cpp")
struct RealModelTests {
    struct TokenizerCase: Decodable {
        let text: String
        let parse_special: Bool
        let ids: [Int32]
    }

    struct GreedyCase: Decodable {
        let prompt: String
        let output: String
    }

    @Test("tokenizer ids equal llama.cpp's for English, Chinese, card numbers, emoji, whitespace and control tokens")
    func tokenizerGoldens() throws {
        let tokenizer = try RealModel.load().tokenizer
        let cases = try RealModel.goldens("gemma3_tokenizer.json", as: TokenizerCase.self)
        #expect(cases.count >= 20)
        for golden in cases {
            let ids = tokenizer.encode(golden.text, addBOS: tokenizer.addsBOS, parseSpecial: golden.parse_special)
            #expect(ids == golden.ids, "\(golden.text.debugDescription) special=\(golden.parse_special)")
            // Decoding gives the text back (control tokens decode to nothing).
            if !golden.parse_special { #expect(tokenizer.decode(ids) == golden.text) }
        }
    }

    /// llama.cpp computes with different rounding (F16 KV cache, flash attention), so where
    /// two candidates are nearly tied the greedy paths may part. The test therefore forces
    /// llama.cpp's continuation token by token and requires, at each of the first 16 steps,
    /// that llama.cpp's token is our top choice or within 0.6 nats of it (a near tie; the
    /// largest gap measured was 0.54 nats, at the 16th token), and that at least 12 of the 16
    /// are exactly our top choice. A wrong operation shows as gaps of several nats.
    @Test("llama.cpp's greedy continuations are our top choice (or a near tie) at each of the first 16 tokens")
    func greedyGoldens() throws {
        let model = try RealModel.load()
        for golden in try RealModel.goldens("gemma3_greedy.json", as: GreedyCase.self) {
            let prompt = model.tokenizer.encode(golden.prompt, addBOS: true, parseSpecial: false)
            let full = model.tokenizer.encode(golden.prompt + golden.output, addBOS: true, parseSpecial: false)
            try #require(Array(full.prefix(prompt.count)) == prompt, "the prompt's tokens are not a prefix: \(golden.prompt)")
            let reference = Array(full.dropFirst(prompt.count).prefix(16))
            try #require(reference.count == 16)
            let cache = model.makeCache(maxContext: 128)
            var logits = try model.forward([ForwardEntry(cache: cache, tokens: prompt, wantsLogits: true)])[0]
            var exact = 0
            for (step, token) in reference.enumerated() {
                let top = logits.indices.max { logits[$0] < logits[$1] }!
                let gap = logits[top] - logits[Int(token)]
                #expect(gap <= 0.6, "\(golden.prompt.debugDescription) step \(step): llama.cpp chose \(token), we prefer \(top) by \(gap) nats")
                if top == Int(token) { exact += 1 }
                logits = try model.forward([ForwardEntry(cache: cache, tokens: [token], wantsLogits: true)])[0]
            }
            #expect(exact >= 12, "\(golden.prompt.debugDescription): only \(exact) of 16 top choices equal llama.cpp's")
        }
    }

    /// Free-running greedy decoding, as `sluice model generate` does it, on all 12 goldens:
    /// our tokens equal llama.cpp's up to the first step where the two may legitimately part —
    /// a near tie, where llama.cpp's token is within 0.6 nats of our top choice (the bound of
    /// `greedyGoldens`; llama.cpp rounds differently: F16 KV cache, flash attention). Parting
    /// anywhere else fails. Our own tokens and logits are pinned, bit for bit and on every CPU,
    /// by `pinnedOutputs`.
    @Test("free-running greedy continuations equal llama.cpp's until a near tie", arguments: 0..<12)
    func greedyFreeRunning(index: Int) throws {
        let model = try RealModel.load()
        let goldens = try RealModel.goldens("gemma3_greedy.json", as: GreedyCase.self)
        try #require(goldens.count == 12)
        let golden = goldens[index]
        let promptTokens = model.tokenizer.encode(golden.prompt, addBOS: true, parseSpecial: false)
        let full = model.tokenizer.encode(golden.prompt + golden.output, addBOS: true, parseSpecial: false)
        let reference = Array(full.dropFirst(promptTokens.count).prefix(16))
        try #require(reference.count == 16)
        let completion = try BatchGenerator(model: model, maxContext: 128).complete(GenerationRequest(promptTokens: promptTokens, maxTokens: 16))
        try #require(completion.tokens.count == reference.count)
        guard let parting = reference.indices.first(where: { completion.tokens[$0] != reference[$0] }) else {
            #expect(completion.tokens == reference)
            return
        }
        // The logits at the parting step, after the common prefix.
        let cache = model.makeCache(maxContext: 128)
        let logits = try model.forward([ForwardEntry(cache: cache, tokens: promptTokens + reference.prefix(parting), wantsLogits: true)])[0]
        let ours = Int(completion.tokens[parting]), theirs = Int(reference[parting])
        #expect(logits.indices.max { logits[$0] < logits[$1] } == ours, "the generator's token is not the forward pass's top choice")
        #expect(logits[ours] - logits[theirs] <= 0.6,
                "\(golden.prompt.debugDescription) parts from llama.cpp at token \(parting) by \(logits[ours] - logits[theirs]) nats: \(completion.text.debugDescription) vs \(golden.output.debugDescription)")
    }

    /// Our outputs, pinned bit for bit: the greedy tokens and a digest of the prompt's logits
    /// (prefilled with int8 products and with dense float products) for each golden prompt,
    /// recorded in `Goldens/sluice_pinned.json`. Every kernel path gives the same bits (see
    /// KernelPathTests), so these hold on every CPU; a change that alters them alters what an
    /// auditor's replay returns, and must be a deliberate one (record anew with
    /// `SLUICE_RECORD_PINNED=1 swift test --filter pinnedOutputs` and say why in the commit).
    @Test("our greedy tokens and logits are the pinned ones, bit for bit")
    func pinnedOutputs() throws {
        struct Pinned: Codable, Equatable {
            let prompt: String
            let tokens: [Int32]
            let int8_logits_fnv1a: String
            let dense_logits_fnv1a: String
        }
        let model = try RealModel.load()
        var outputs: [Pinned] = []
        for golden in try RealModel.goldens("gemma3_greedy.json", as: GreedyCase.self) {
            let prompt = model.tokenizer.encode(golden.prompt, addBOS: true, parseSpecial: false)
            let tokens = try BatchGenerator(model: model, maxContext: 64).complete(GenerationRequest(promptTokens: prompt, maxTokens: 16)).tokens
            func digest(dense: Bool) throws -> String {
                let logits = try model.forward([ForwardEntry(cache: model.makeCache(maxContext: 64), tokens: prompt, wantsLogits: true, dense: dense)])[0]
                var hash: UInt64 = 0xCBF2_9CE4_8422_2325
                for value in logits {
                    for shift in stride(from: 0, to: 32, by: 8) {
                        hash = (hash ^ UInt64((value.bitPattern >> UInt32(shift)) & 0xFF)) &* 0x0000_0100_0000_01B3
                    }
                }
                return String(hash, radix: 16)
            }
            outputs.append(Pinned(prompt: golden.prompt, tokens: tokens, int8_logits_fnv1a: try digest(dense: false), dense_logits_fnv1a: try digest(dense: true)))
        }
        let url = Repository.root.appendingPathComponent("Tests/InferenceTests/Goldens/sluice_pinned.json")
        if ProcessInfo.processInfo.environment["SLUICE_RECORD_PINNED"] == "1" {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
            try encoder.encode(outputs).write(to: url)
        }
        let pinned = try JSONDecoder().decode([Pinned].self, from: Data(contentsOf: url))
        #expect(pinned.count == 12)
        for (ours, expected) in zip(outputs, pinned) {
            #expect(ours == expected, "\(ours.prompt.debugDescription) on \(String(cString: sl_simd_level()))")
        }
    }

    @Test("“The capital of France is Paris. The capital of Germany is” continues with Berlin")
    func berlin() throws {
        let model = try RealModel.load()
        let prompt = model.tokenizer.encode("The capital of France is Paris. The capital of Germany is", addBOS: true, parseSpecial: false)
        let completion = try BatchGenerator(model: model).complete(GenerationRequest(promptTokens: prompt, maxTokens: 3))
        #expect(completion.text.hasPrefix(" Berlin"))
    }

    @Test("batching is exact: 9 sequences of different lengths (one prefilled with sgemm) decoded together give each one's solo tokens")
    func batchingIsExact() throws {
        let model = try RealModel.load()
        let prompts = [
            "Hello", "My card was declined at the shop today and", "转账限额是多少？", "The bank's opening hours are",
            "Q: How do I reset my PIN?\nA:", "Once upon a time", "1, 2, 3, 4,", "Dear customer, thank you for",
            // Long enough (≥ 64 tokens) to be prefilled with float products (sgemm).
            String(repeating: "My statement shows a payment I did not make. ", count: 8) + "What should I do?",
        ]
        let requests = prompts.map {
            GenerationRequest(promptTokens: model.tokenizer.encode($0, addBOS: true, parseSpecial: false), maxTokens: 10)
        }
        let dense = 64  // the float prefill for prompts this long, next to int8 ones
        #expect(requests.last!.promptTokens.count >= dense)
        let solo = try requests.map { try BatchGenerator(model: model, maxContext: 128, densePrefillMinimum: dense).complete($0).tokens }

        // A small prefill budget splits the prompts into other chunks than when alone.
        let generator = BatchGenerator(model: model, maxContext: 128, prefillBudget: 24, densePrefillMinimum: dense)
        // Half join at once; the rest join while the first ones are decoding (continuous batching).
        for (id, request) in requests.enumerated().prefix(4) { try generator.submit(id, request) }
        var together: [Int: [Int32]] = [:]
        var steps = 0
        while together.count < requests.count {
            if steps == 3 { for (id, request) in requests.enumerated().dropFirst(4) { try generator.submit(id, request) } }
            for case .finished(let id, let completion) in try generator.step() { together[id] = completion.tokens }
            steps += 1
        }
        for (id, tokens) in solo.enumerated() { #expect(together[id] == tokens, "sequence \(id)") }
    }

    @Test("sampling with a seed is reproducible, and different seeds differ")
    func seededSampling() throws {
        let model = try RealModel.load()
        let prompt = model.tokenizer.encode("My favourite colour is", addBOS: true, parseSpecial: false)
        func run(_ seed: UInt64) throws -> [Int32] {
            try BatchGenerator(model: model, maxContext: 64).complete(
                GenerationRequest(promptTokens: prompt, maxTokens: 12, sampling: SamplingParameters(temperature: 1.0, topK: 40, topP: 0.95, seed: seed))
            ).tokens
        }
        #expect(try run(42) == run(42))
        #expect(try run(42) != run(7))
    }
}
