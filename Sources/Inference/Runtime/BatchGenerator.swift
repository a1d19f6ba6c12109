import Foundation

/// A request to complete one prompt.
public struct GenerationRequest: Sendable {
    public var promptTokens: [Int32]
    public var maxTokens: Int
    public var sampling: SamplingParameters
    /// Generation stops before any of these strings (which are not part of the text).
    public var stopStrings: [String]

    public init(promptTokens: [Int32], maxTokens: Int, sampling: SamplingParameters = .greedy, stopStrings: [String] = []) {
        self.promptTokens = promptTokens
        self.maxTokens = maxTokens
        self.sampling = sampling
        self.stopStrings = stopStrings
    }
}

/// A finished completion with its confidence.
public struct Completion: Sendable, Equatable {
    public enum FinishReason: String, Sendable { case endOfSequence = "eos", maxTokens = "max_tokens", stopString = "stop", contextFull = "context_full" }

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

        init(id: SequenceID, request: GenerationRequest, cache: KVCache) {
            self.id = id
            self.request = request
            self.cache = cache
            self.sampler = Sampler(request.sampling)
            self.pendingPrompt = request.promptTokens[...]
        }
    }

    public let model: any LanguageModel
    public let maxContext: Int
    /// Prompt tokens one step prefills at most, over all sequences (bounds step latency).
    public let prefillBudget: Int
    /// Prompts at least this long are prefilled with float matrix products (OpenBLAS sgemm)
    /// instead of int8 ones; decided per sequence so that batching stays exact.
    public let densePrefillMinimum: Int
    private var sequences: [Sequence] = []

    public init(model: any LanguageModel, maxContext: Int = 4096, prefillBudget: Int = 512, densePrefillMinimum: Int = 64) {
        self.model = model
        self.maxContext = min(maxContext, model.config.contextLength)
        self.prefillBudget = max(1, prefillBudget)
        self.densePrefillMinimum = densePrefillMinimum
    }

    public var activeCount: Int { sequences.count }

    /// Adds a sequence; it joins the batch at the next step.
    public func submit(_ id: SequenceID, _ request: GenerationRequest) throws(InferenceError) {
        guard !request.promptTokens.isEmpty else { throw InferenceError(.invalidRequest, "the prompt is empty") }
        guard request.maxTokens > 0 else { throw InferenceError(.invalidRequest, "max_tokens must be positive") }
        guard request.promptTokens.count < maxContext else {
            throw InferenceError(.invalidRequest, "the prompt has \(request.promptTokens.count) tokens; the context holds \(maxContext)")
        }
        sequences.append(Sequence(id: id, request: request, cache: model.makeCache(maxContext: maxContext)))
    }

    /// Drops a sequence (e.g. its deadline passed); no event is produced for it.
    public func cancel(_ id: SequenceID) {
        sequences.removeAll { $0.id == id }
    }

    /// One forward pass over every active sequence. Returns what happened.
    public func step() throws(InferenceError) -> [Event] {
        var entries: [ForwardEntry] = []
        var participants: [(Sequence, wantsLogits: Bool)] = []
        var budget = prefillBudget
        for sequence in sequences {
            if let token = sequence.nextToken {
                entries.append(ForwardEntry(cache: sequence.cache, tokens: [token], wantsLogits: true))
                participants.append((sequence, true))
            } else if budget > 0 {
                let count = min(budget, model.prefillChunk, sequence.pendingPrompt.count)
                let chunk = Array(sequence.pendingPrompt.prefix(count))
                sequence.pendingPrompt = sequence.pendingPrompt.dropFirst(count)
                budget -= count
                let last = sequence.pendingPrompt.isEmpty
                let dense = sequence.request.promptTokens.count >= densePrefillMinimum
                entries.append(ForwardEntry(cache: sequence.cache, tokens: chunk, wantsLogits: last, dense: dense))
                participants.append((sequence, last))
            }
        }
        guard !entries.isEmpty else { return [] }
        let logits = try model.forward(entries)
        var events: [Event] = []
        var logitIndex = 0
        for (sequence, wantsLogits) in participants where wantsLogits {
            let (token, probability) = sequence.sampler.sample(logits[logitIndex])
            logitIndex += 1
            events += accept(token, probability: probability, for: sequence)
        }
        return events
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
