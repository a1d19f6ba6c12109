import Foundation
import Inference
import Testing

/// The shared-prefix KV cache on the real model: a sequence that copies a cached prefix must
/// compute exactly what it computes alone — same tokens, same confidences, same choice scores,
/// bit for bit — while computing fewer prompt positions.
@Suite("Prefix cache: shared prompt prefixes computed once, results bit-identical")
struct PrefixCacheTests {
    /// What a completion says, without its timing.
    struct Outcome: Equatable, CustomStringConvertible {
        let text: String
        let tokens: [Int32]
        let confidenceBits: UInt64
        let minProbabilityBits: UInt64
        let finishReason: Completion.FinishReason
        let choice: Int?
        let choiceScoreBits: [UInt64]

        init(_ completion: Completion) {
            text = completion.text
            tokens = completion.tokens
            confidenceBits = completion.confidence.bitPattern
            minProbabilityBits = completion.minTokenProbability.bitPattern
            finishReason = completion.finishReason
            choice = completion.choice
            choiceScoreBits = completion.choiceScores.map(\.bitPattern)
        }

        var description: String { "\(tokens) \(Double(bitPattern: confidenceBits)) \(choiceScoreBits.map { Double(bitPattern: $0) })" }
    }

    static let preamble = """
        Bank information:
        - Card fees: the classic card has no annual fee; the gold card costs 300 yuan a year, waived after \
        twelve purchases in a year. Replacement cards cost 20 yuan.
        - Lost cards: call the hotline 95555 at any hour or freeze the card in the app under Cards > Freeze; \
        a frozen card can be unfrozen at once.
        - Transfers: the daily limit for transfers in the app is 50,000 yuan, raised at a branch with an ID card.
        - Branch hours: branches open 9:00 to 17:00 on weekdays and 9:00 to 16:00 on Saturdays.


        """

    static func tokens(_ model: any LanguageModel, _ text: String) -> [Int32] {
        model.tokenizer.encode(text, addBOS: true, parseSpecial: false)
    }

    static func choice(_ model: any LanguageModel, _ text: String) -> GenerationRequest.Choice {
        GenerationRequest.Choice(tokens: model.tokenizer.encode(text, addBOS: false, parseSpecial: false), text: text)
    }

    /// Grounded prompts sharing the preamble (dense prefill), extractive ones among them, and
    /// short prompts (int8 prefill) — one of which starts like the preamble, so it must not
    /// take the preamble's dense pages.
    static func requests(_ model: any LanguageModel) -> [GenerationRequest] {
        let questions = ["What does the gold card cost?", "I lost my card, what do I do?", "How much can I transfer a day?",
                         "When do branches open on Saturday?", "转账限额是多少？"]
        var requests = questions.map {
            GenerationRequest(promptTokens: tokens(model, preamble + "Customer question: \($0)\nAnswer:"), maxTokens: 8)
        }
        let choices = [" The gold card costs 300 yuan a year.", " Call the hotline 95555 at any hour.", " Branches open 9:00 to 17:00."]
            .map { choice(model, $0) }
        for question in ["How much is the gold card?", "Who do I call about a stolen card?"] {
            requests.append(GenerationRequest(
                promptTokens: tokens(model, preamble + "Customer question: \(question)\nAnswer:"), maxTokens: 1, choices: choices))
        }
        for question in ["How do I reset my PIN? The app said it was wrong twice.", "How do I reset my password? The app locked me out."] {
            requests.append(GenerationRequest(promptTokens: tokens(model, "Q: \(question)\nA:"), maxTokens: 8))
        }
        requests.append(GenerationRequest(promptTokens: tokens(model, "Bank information:\n- Card fees: the classic card has no annual fee; the gold card costs"), maxTokens: 8))
        return requests
    }

    /// Runs every request to completion on one generator, all submitted at once.
    static func runTogether(_ generator: BatchGenerator, _ requests: [GenerationRequest], firstID: Int = 0) throws -> [Outcome] {
        for (index, request) in requests.enumerated() { try generator.submit(firstID + index, request) }
        var outcomes: [Int: Outcome] = [:]
        while outcomes.count < requests.count {
            for case .finished(let id, let completion) in try generator.step() { outcomes[id - firstID] = Outcome(completion) }
        }
        return requests.indices.map { outcomes[$0]! }
    }

    /// Positions a request computes when every whole page before its last token is cached.
    static func lastPartialPage(_ request: GenerationRequest, pageTokens: Int) -> Int {
        request.promptTokens.count - (request.promptTokens.count - 1) / pageTokens * pageTokens
    }

    @Test("within a burst and across batches, with a roomy and with a tiny (evicting) cache")
    func exactAndShared() throws {
        let model = try RealModel.load()
        let requests = Self.requests(model)
        // Prompts this long or longer are prefilled in float: both paths, side by side.
        let dense = 64
        #expect(requests[0].promptTokens.count >= dense)
        #expect(requests.last!.promptTokens.count < dense)
        let solo = try requests.map { Outcome(try BatchGenerator(model: model, maxContext: 512, densePrefillMinimum: dense).complete($0)) }
        let everyPrompt = requests.reduce(0) { $0 + $1.promptTokens.count }

        let cache = PrefixCache(capacityBytes: 256 << 20)
        let generator = BatchGenerator(model: model, maxContext: 512, densePrefillMinimum: dense, prefixCache: cache)
        let burst = try Self.runTogether(generator, requests)
        for index in requests.indices { #expect(burst[index] == solo[index], "request \(index) in the burst") }
        // The six grounded prompts after the first waited for its prefill and copied the
        // preamble's pages; the two "Q: How do I reset my" prompts share less than a wait's worth.
        let shared = requests[1..<7].map { request in
            zip(request.promptTokens, requests[0].promptTokens).prefix { $0 == $1 }.count / cache.pageTokens * cache.pageTokens
        }.min()!
        #expect(shared >= 128)
        #expect(generator.prefilledTokens <= everyPrompt - 6 * shared, "prefilled \(generator.prefilledTokens) of \(everyPrompt)")
        #expect(cache.statistics.hits >= 6)

        // Again, as a later batch: every whole page before each prompt's last token is cached.
        let before = generator.prefilledTokens
        let again = try Self.runTogether(generator, requests, firstID: 100)
        for index in requests.indices { #expect(again[index] == solo[index], "request \(index) in a later batch") }
        let floor = requests.reduce(0) { $0 + Self.lastPartialPage($1, pageTokens: cache.pageTokens) }
        #expect(generator.prefilledTokens - before == floor)
        #expect(cache.statistics.bytes <= cache.capacityBytes && cache.statistics.pages > 0)

        // A cache that holds three pages evicts all the time and changes nothing either.
        let pageBytes = cache.statistics.bytes / cache.statistics.pages
        let tiny = PrefixCache(capacityBytes: 3 * pageBytes)
        let small = BatchGenerator(model: model, maxContext: 512, densePrefillMinimum: dense, prefixCache: tiny)
        let squeezed = try Self.runTogether(small, requests) + Self.runTogether(small, requests, firstID: 100)
        for index in squeezed.indices { #expect(squeezed[index] == solo[index % requests.count], "request \(index) with three pages") }
        #expect(tiny.statistics.evictedPages > 0 && tiny.statistics.pages <= 3)
    }

    @Test("a prefix longer than the sliding window's ring is restored exactly")
    func pastTheSlidingWindow() throws {
        let model = try RealModel.load()
        let generator = BatchGenerator(model: model, maxContext: 1_400)
        let window = model.config.slidingWindow + model.prefillChunk
        var document = Self.preamble
        while Self.tokens(model, document).count < window + 100 { document += Self.preamble }
        let first = GenerationRequest(promptTokens: Self.tokens(model, document + "Customer question: What does the gold card cost?\nAnswer:"), maxTokens: 4)
        let second = GenerationRequest(promptTokens: Self.tokens(model, document + "Customer question: When do branches open?\nAnswer:"), maxTokens: 4)
        #expect(second.promptTokens.count > window && second.promptTokens.count < generator.maxContext)
        let solo = try Outcome(generator.complete(second))

        let cache = PrefixCache(capacityBytes: 512 << 20)
        let cached = BatchGenerator(model: model, maxContext: 1_400, prefixCache: cache)
        _ = try cached.complete(first)
        let computedBefore = cached.prefilledTokens
        #expect(try Outcome(cached.complete(second)) == solo)
        // The second prompt copied more positions than a sliding layer's ring holds.
        #expect(cache.statistics.hitTokens > window)
        #expect(cached.prefilledTokens - computedBefore < second.promptTokens.count - window)
    }
}
