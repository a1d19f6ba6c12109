import Foundation
import Inference
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

    /// Free-running greedy decoding, as `sluice model generate` does it, reproduces llama.cpp's
    /// first 16 tokens exactly on these golden prompts. (Measured on all 12 goldens: 7 agree for
    /// 16 tokens or more; the other 5 part at a near tie after 5 to 12 tokens, which
    /// `greedyGoldens` bounds.)
    @Test("free-running greedy continuations equal llama.cpp's for the first 16 tokens", arguments: [
        "The capital of France is Paris. The capital of Germany is",
        "Customer question: What is the annual fee of the gold card?\nBank service answer:",
        "Customer question: 我想查询信用卡账单\nBank service answer:",
        "Customer question: Can I increase my credit limit?\nBank service answer:",
        "Customer question: I want to talk to a human agent.\nBank service answer:",
        "The bank's opening hours are",
    ])
    func greedyExact(prompt: String) throws {
        let model = try RealModel.load()
        let golden = try #require(try RealModel.goldens("gemma3_greedy.json", as: GreedyCase.self).first { $0.prompt == prompt })
        let promptTokens = model.tokenizer.encode(prompt, addBOS: true, parseSpecial: false)
        let full = model.tokenizer.encode(prompt + golden.output, addBOS: true, parseSpecial: false)
        let reference = Array(full.dropFirst(promptTokens.count).prefix(16))
        let completion = try BatchGenerator(model: model, maxContext: 128).complete(GenerationRequest(promptTokens: promptTokens, maxTokens: 16))
        #expect(completion.tokens == reference, "\(prompt.debugDescription): \(completion.text.debugDescription) vs \(golden.output.debugDescription)")
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
        #expect(requests.last!.promptTokens.count >= BatchGenerator(model: model).densePrefillMinimum)
        let solo = try requests.map { try BatchGenerator(model: model, maxContext: 128).complete($0).tokens }

        // A small prefill budget splits the prompts into other chunks than when alone.
        let generator = BatchGenerator(model: model, maxContext: 128, prefillBudget: 24)
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
