import Foundation
import Inference
import Testing

/// Extractive answering on the real model: choices are scored on forks of the prompt's KV
/// cache, and the scores are the ones a plain prefill of prompt + choice gives.
@Suite("Choice scoring on forked KV caches (real model)")
struct ChoiceScoringTests {
    static func choice(_ model: any LanguageModel, _ text: String) -> GenerationRequest.Choice {
        GenerationRequest.Choice(tokens: model.tokenizer.encode(text, addBOS: false, parseSpecial: false), text: text)
    }

    /// log p(choice | prompt) token by token, by prefilling prompt + choice in one sequence.
    static func reference(_ model: any LanguageModel, prompt: [Int32], choice: [Int32]) throws -> [Double] {
        let cache = model.makeCache(maxContext: 256)
        let all = prompt + choice
        let rows = try model.forward([ForwardEntry(cache: cache, tokens: Array(all.dropLast()), wantsLogits: false,
                                                   targets: Array(all.dropFirst()))])
        return rows[0].suffix(choice.count).map(Double.init)
    }

    @Test("the model picks the right continuation; fork scores equal a plain prefill's bit for bit, alone or batched")
    func scores() throws {
        let model = try RealModel.load()
        let prompt = model.tokenizer.encode("The capital of France is Paris. The capital of Germany is", addBOS: true, parseSpecial: false)
        let choices = [" Madrid.", " Berlin.", " the city of Rome, on the Tiber."].map { Self.choice(model, $0) }
        let generator = BatchGenerator(model: model, maxContext: 256)
        let alone = try generator.complete(GenerationRequest(promptTokens: prompt, maxTokens: 1, choices: choices))
        #expect(alone.choice == 1 && alone.text == " Berlin." && alone.finishReason == .choice)
        for (index, choice) in choices.enumerated() {
            let tokens = try Self.reference(model, prompt: prompt, choice: choice.tokens)
            let mean = tokens.reduce(0, +) / Double(tokens.count)
            #expect(alone.choiceScores[index] == mean, "choice \(index): fork \(alone.choiceScores[index]) vs prefill \(mean)")
        }
        // Batched with a generating sequence and another scoring one: the same bits.
        try generator.submit(1, GenerationRequest(promptTokens: prompt, maxTokens: 3))
        try generator.submit(2, GenerationRequest(promptTokens: prompt, maxTokens: 1, choices: choices))
        try generator.submit(3, GenerationRequest(promptTokens: Array(prompt.prefix(5)), maxTokens: 1, choices: Array(choices.prefix(2))))
        var finished: [Int: Completion] = [:]
        while finished.count < 3 {
            for case .finished(let id, let completion) in try generator.step() { finished[id] = completion }
        }
        #expect(finished[2]?.choiceScores == alone.choiceScores && finished[2]?.choice == 1)
        #expect(finished[3]?.choiceScores.count == 2)
    }

    @Test("a fork is independent of its source and holds only what it needs")
    func fork() throws {
        let model = try RealModel.load()
        let cache = model.makeCache(maxContext: 512)
        let prompt = model.tokenizer.encode("Branches are open 9:00 to 17:00.", addBOS: true, parseSpecial: false)
        _ = try model.forward([ForwardEntry(cache: cache, tokens: prompt, wantsLogits: true)])
        let fork = cache.fork(reserving: 4)
        #expect(fork.length == cache.length && fork.byteCount < cache.byteCount)
        let next = model.tokenizer.encode(" Saturdays", addBOS: false, parseSpecial: false)
        let a = try model.forward([ForwardEntry(cache: fork, tokens: next, wantsLogits: true)])
        let b = try model.forward([ForwardEntry(cache: cache, tokens: next, wantsLogits: true)])
        #expect(a == b, "the fork computes what the source computes")
        #expect(fork.length == prompt.count + next.count && cache.length == prompt.count + next.count)
    }
}
