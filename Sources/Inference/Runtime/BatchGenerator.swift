import Foundation
import Kernels

/// A request to complete one prompt.
public struct GenerationRequest: Sendable {
    public var promptTokens: [Int32]
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Generation stops before any of these strings (which are not part of the text).
    public var stopStrings: [String]
    /// When not empty, nothing is generated: the model scores each choice as a continuation
    /// of the prompt and the completion is the most likely one (highest mean log-probability
    /// per token). Extractive answering: the answer can only be one of these texts.
    public var choices: [Choice]

    /// A candidate continuation: its tokens (as the model scores them, e.g. ending with the
    /// token that closes an answer) and the text it stands for.
    public struct Choice: Sendable, Equatable {
        public var tokens: [Int32]
        public var text: String

        public init(tokens: [Int32], text: String) {
            self.tokens = tokens
            self.text = text
        }
    }

    public init(promptTokens: [Int32], maxTokens: Int, sampling: SamplingParameters = .greedy, stopStrings: [String] = [], choices: [Choice] = []) {
        self.promptTokens = promptTokens
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopStrings = stopStrings
        self.choices = choices
    }
}

/// A finished completion with its confidence.
public struct Completion: Sendable, Equatable {
    public enum FinishReason: String, Sendable {
        case endOfSequence = "eos", maxTokens = "max_tokens", stopString = "stop", contextFull = "context_full"
        /// A choice was picked (``GenerationRequest/choices``).
        case choice
    }

    public var text: String
    public var tokens: [Int32]
    /// exp(mean log p) of the chosen tokens: their geometric-mean probability.
    public var confidence: Double
    /// The smallest probability among the chosen tokens.
    public var minTokenProbability: Double
    public var promptTokens: Int
    public var finishReason: FinishReason
    /// When the first token was produced, relative to when the request joined (seconds).
    public var timeToFirstToken: Double?
    /// For a request with choices: the one picked, and every choice's mean log-probability
    /// per token (in the request's order).
    public var choice: Int?
    public var choiceScores: [Double] = []

    public var completionTokens: Int { tokens.count }

    public init(text: String, tokens: [Int32], confidence: Double, minTokenProbability: Double, promptTokens: Int,
                finishReason: FinishReason, timeToFirstToken: Double?) {
        self.text = text
        self.tokens = tokens
        self.confidence = confidence
        self.minTokenProbability = minTokenProbability
        self.promptTokens = promptTokens
        self.finishReason = finishReason
        self.timeToFirstToken = timeToFirstToken
    }
}

/// Continuous batching over a model: sequences join between steps and leave when done;
/// each `step()` runs one forward pass for every active sequence (a prompt chunk for new
/// ones, one token for the others).
public final class BatchGenerator {
    public typealias SequenceID = Int

    public enum Event: Sendable {
        /// New text of a sequence (streamed; complete UTF-8 only).
        case text(SequenceID, String)
        case finished(SequenceID, Completion)
    }

    private final class Sequence {
        let id: SequenceID
        let request: GenerationRequest
        let cache: KVCache
        var sampler: Sampler
        var pendingPrompt: ArraySlice<Int32>
        var generated: [Int32] = []
        var logProbabilitySum = 0.0
        var minProbability = 1.0
        var decoder = StreamingDecoder()
        var text = ""
        var nextToken: Int32?
        let joined = ContinuousClock.now
        var firstToken: Double?
        /// Choices only: the log-probability of each choice's first token (from the prompt's
        /// last logits), set once the prompt is prefilled; the next step scores the rest.
        var choiceFirstScores: [Double]?
        /// Its prompt's place in the prefix cache; nil until its prefill starts.
        var chain: PrefixCache.Chain?
        let dense: Bool

        init(id: SequenceID, request: GenerationRequest, cache: KVCache, dense: Bool) {
            self.id = id
            self.request = request
            self.cache = cache
            self.dense = dense
            self.sampler = Sampler(request.sampling)
            self.pendingPrompt = request.promptTokens[...]
        }
    }

    public let model: any LanguageModel
    public let maxContext: Int
    /// Prompt tokens one step prefills at most, over all sequences (bounds step latency).
    public let prefillBudget: Int
    /// Prompts at least this long are prefilled with float matrix products (the dense kernel)
    /// instead of int8 ones; decided per sequence so that batching stays exact. Default: none,
    /// since the packed int8 products prefill faster (`sluice model bench`: 512 tokens at
    /// ~1.2× the dense kernel's speed on AVX-512 VNNI, about equal on AVX2) and answer as
    /// well (`sluice eval`).
    public let densePrefillMinimum: Int
    /// Keys and values of prompt prefixes shared between sequences (nil: every prompt is
    /// computed in full). Results are the same with and without it.
    public let prefixCache: PrefixCache?
    /// A sequence whose prompt shares at least this many more positions with one being
    /// prefilled than the cache holds waits for that prefill to finish and copies its pages.
    public let prefixWaitMinimum: Int
    /// Prompt positions computed so far (those copied from the prefix cache not included).
    public private(set) var prefilledTokens = 0
    private var sequences: [Sequence] = []

    public init(model: any LanguageModel, maxContext: Int = 4096, prefillBudget: Int = 512, densePrefillMinimum: Int = Int.max,
                prefixCache: PrefixCache? = nil, prefixWaitMinimum: Int = 64) {
        self.model = model
        self.maxContext = min(maxContext, model.config.contextLength)
        self.prefillBudget = max(1, prefillBudget)
        self.densePrefillMinimum = densePrefillMinimum
        self.prefixCache = prefixCache
        self.prefixWaitMinimum = prefixWaitMinimum
    }

    public var activeCount: Int { sequences.count }

    /// Adds a sequence; it joins the batch at the next step.
    public func submit(_ id: SequenceID, _ request: GenerationRequest) throws(InferenceError) {
        guard !request.promptTokens.isEmpty else { throw InferenceError(.invalidRequest, "the prompt is empty") }
        guard request.maxTokens > 0 else { throw InferenceError(.invalidRequest, "max_tokens must be positive") }
        guard request.promptTokens.count < maxContext else {
            throw InferenceError(.invalidRequest, "the prompt has \(request.promptTokens.count) tokens; the context holds \(maxContext)")
        }
        for choice in request.choices {
            guard !choice.tokens.isEmpty, choice.tokens.count <= model.prefillChunk,
                  request.promptTokens.count + choice.tokens.count <= maxContext else {
                throw InferenceError(.invalidRequest, "a choice must hold 1...\(model.prefillChunk) tokens and fit the context after the prompt")
            }
        }
        sequences.append(Sequence(id: id, request: request, cache: model.makeCache(maxContext: maxContext),
                                  dense: request.promptTokens.count >= densePrefillMinimum))
    }

    /// Drops a sequence (e.g. its deadline passed); no event is produced for it.
    public func cancel(_ id: SequenceID) {
        sequences.removeAll { $0.id == id }
    }

    /// One forward pass over every active sequence. Returns what happened.
    public func step() throws(InferenceError) -> [Event] {
        var entries: [ForwardEntry] = []
        var participants: [(Sequence, wantsLogits: Bool)] = []
        var scoring: [(Sequence, entries: [Int?])] = []
        var prefilling: [Sequence] = []
        var budget = prefillBudget
        for sequence in sequences {
            if sequence.choiceFirstScores != nil {
                // Every choice longer than one token is scored on its own fork of the prompt.
                // Scored tokens count against the step's prefill budget (a sequence whose
                // choices do not fit waits for a later step, unless it would be the step's only work).
                let cost = sequence.request.choices.reduce(0) { $0 + $1.tokens.count - 1 }
                guard cost <= budget || (entries.isEmpty && scoring.isEmpty) else { continue }
                budget -= cost
                var indices: [Int?] = []
                for choice in sequence.request.choices {
                    guard choice.tokens.count > 1 else { indices.append(nil); continue }
                    indices.append(entries.count)
                    entries.append(ForwardEntry(
                        cache: sequence.cache.fork(reserving: choice.tokens.count),
                        tokens: Array(choice.tokens.dropLast()), wantsLogits: false, targets: Array(choice.tokens.dropFirst())))
                }
                scoring.append((sequence, indices))
            } else if let token = sequence.nextToken {
                entries.append(ForwardEntry(cache: sequence.cache, tokens: [token], wantsLogits: true))
                participants.append((sequence, true))
            } else if budget > 0 {
                if sequence.chain == nil {
                    guard !waitsForSharedPrefix(sequence, prefillingNow: prefilling) else { continue }
                    startPrefill(sequence)
                }
                let count = min(budget, model.prefillChunk, sequence.pendingPrompt.count)
                let chunk = Array(sequence.pendingPrompt.prefix(count))
                sequence.pendingPrompt = sequence.pendingPrompt.dropFirst(count)
                budget -= count
                prefilledTokens += count
                let last = sequence.pendingPrompt.isEmpty
                entries.append(ForwardEntry(cache: sequence.cache, tokens: chunk, wantsLogits: last, dense: sequence.dense))
                participants.append((sequence, last))
                prefilling.append(sequence)
            }
        }
        guard !entries.isEmpty || !scoring.isEmpty else { return [] }
        let results = entries.isEmpty ? [] : try model.forward(entries)
        if let prefixCache {
            for sequence in prefilling {
                prefixCache.extend(&sequence.chain!, tokens: sequence.request.promptTokens, dense: sequence.dense, from: sequence.cache)
            }
        }
        // Results come in entry order, one per entry that wants one.
        var resultOfEntry: [Int: [Float]] = [:]
        var next = 0
        for (index, entry) in entries.enumerated() where entry.wantsLogits {
            resultOfEntry[index] = results[next]
            next += 1
        }
        var events: [Event] = []
        for (sequence, firstEntry) in scoring {
            events += choose(sequence, scores: firstEntry.map { $0.flatMap { resultOfEntry[$0] } ?? [] })
        }
        var participantIndex = 0
        for (index, entry) in entries.enumerated() where entry.targets == nil {
            defer { participantIndex += 1 }
            let (sequence, wantsLogits) = participants[participantIndex]
            guard wantsLogits, let logits = resultOfEntry[index] else { continue }
            if !sequence.request.choices.isEmpty {
                let logSum = logits.withUnsafeBufferPointer { Double(sl_logsumexp($0.baseAddress!, Int64($0.count))) }
                sequence.choiceFirstScores = sequence.request.choices.map { Double(logits[Int($0.tokens[0])]) - logSum }
                if sequence.firstToken == nil { sequence.firstToken = (ContinuousClock.now - sequence.joined).seconds }
                continue
            }
            let (token, probability) = sequence.sampler.sample(logits)
            events += accept(token, probability: probability, for: sequence)
        }
        return events
    }

    /// Begins a sequence's prefill from the longest cached prefix of its prompt (the last
    /// prompt token is always computed: its logits are needed).
    private func startPrefill(_ sequence: Sequence) {
        guard let prefixCache else {
            sequence.chain = PrefixCache.Chain()
            return
        }
        let prompt = sequence.request.promptTokens
        let chain = prefixCache.restore(prompt, dense: sequence.dense, limit: prompt.count - 1, into: sequence.cache)
        sequence.chain = chain
        sequence.pendingPrompt = prompt[chain.positions...]
    }

    /// Whether a sequence about to start should wait: another one is prefilling a prefix it
    /// shares (at least `prefixWaitMinimum` positions beyond what the cache holds), whose pages
    /// it can copy once they are computed. Only sequences that have started (`prefillingNow`:
    /// in this step) and still store pages are waited for, so waits end.
    private func waitsForSharedPrefix(_ sequence: Sequence, prefillingNow: [Sequence]) -> Bool {
        guard let prefixCache else { return false }
        let prompt = sequence.request.promptTokens
        let usable = (prompt.count - 1) / prefixCache.pageTokens * prefixCache.pageTokens
        let cached = prefixCache.cachedPositions(prompt, dense: sequence.dense, limit: usable)
        for other in sequences where other !== sequence && other.dense == sequence.dense && (other.chain?.open ?? false)
            && (!other.pendingPrompt.isEmpty || prefillingNow.contains { $0 === other }) {
            let otherPrompt = other.request.promptTokens
            var shared = 0
            let bound = min(usable, otherPrompt.count)
            while shared < bound, prompt[shared] == otherPrompt[shared] { shared += 1 }
            if shared / prefixCache.pageTokens * prefixCache.pageTokens - cached >= prefixWaitMinimum { return true }
        }
        return false
    }

    /// Picks the choice with the highest mean log-probability per token (the first on ties)
    /// and finishes the sequence with it.
    private func choose(_ sequence: Sequence, scores rest: [[Float]]) -> [Event] {
        let first = sequence.choiceFirstScores ?? []
        var means: [Double] = []
        var best = 0
        var bestTokenScores: [Double] = []
        for (index, choice) in sequence.request.choices.enumerated() {
            let tokenScores = [first[index]] + rest[index].map(Double.init)
            let mean = tokenScores.reduce(0, +) / Double(choice.tokens.count)
            means.append(mean)
            if index == 0 || mean > means[best] {
                best = index
                bestTokenScores = tokenScores
            }
        }
        sequences.removeAll { $0 === sequence }
        let choice = sequence.request.choices[best]
        var completion = Completion(
            text: choice.text, tokens: choice.tokens, confidence: exp(means[best]),
            minTokenProbability: exp(bestTokenScores.min() ?? 0), promptTokens: sequence.request.promptTokens.count,
            finishReason: .choice, timeToFirstToken: sequence.firstToken)
        completion.choice = best
        completion.choiceScores = means
        return [.finished(sequence.id, completion)]
    }

    private func accept(_ token: Int32, probability: Double, for sequence: Sequence) -> [Event] {
        if sequence.firstToken == nil { sequence.firstToken = (ContinuousClock.now - sequence.joined).seconds }
        let tokenizer = model.tokenizer
        if tokenizer.isEndOfGeneration(token) { return finish(sequence, .endOfSequence) }
        sequence.generated.append(token)
        sequence.logProbabilitySum += log(max(probability, 1e-300))
        sequence.minProbability = min(sequence.minProbability, probability)
        let piece = sequence.decoder.append(token, tokenizer: tokenizer)
        sequence.text += piece
        if let stop = sequence.request.stopStrings.compactMap({ sequence.text.range(of: $0) }).min(by: { $0.lowerBound < $1.lowerBound }) {
            sequence.text = String(sequence.text[..<stop.lowerBound])
            return finish(sequence, .stopString)
        }
        var events: [Event] = piece.isEmpty ? [] : [.text(sequence.id, piece)]
        if sequence.generated.count >= sequence.request.maxTokens {
            events += finish(sequence, .maxTokens)
        } else if sequence.cache.length + 1 >= sequence.cache.maxContext {
            events += finish(sequence, .contextFull)
        } else {
            sequence.nextToken = token
        }
        return events
    }

    private func finish(_ sequence: Sequence, _ reason: Completion.FinishReason) -> [Event] {
        if reason != .stopString { sequence.text += sequence.decoder.finish() }
        sequences.removeAll { $0 === sequence }
        let count = sequence.generated.count
        let completion = Completion(
            text: sequence.text,
            tokens: sequence.generated,
            confidence: count > 0 ? exp(sequence.logProbabilitySum / Double(count)) : 0,
            minTokenProbability: count > 0 ? sequence.minProbability : 0,
            promptTokens: sequence.request.promptTokens.count,
            finishReason: reason,
            timeToFirstToken: sequence.firstToken
        )
        return [.finished(sequence.id, completion)]
    }

    /// Runs one request alone to completion.
    public func complete(_ request: GenerationRequest) throws(InferenceError) -> Completion {
        let id = (sequences.map(\.id).max() ?? 0) + 1
        try submit(id, request)
        while true {
            for event in try step() {
                if case .finished(id, let completion) = event { return completion }
            }
        }
    }
}

extension Duration {
    var seconds: Double {
        let (seconds, attoseconds) = components
        return Double(seconds) + Double(attoseconds) / 1e18
    }
}
