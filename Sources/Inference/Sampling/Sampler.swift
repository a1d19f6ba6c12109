import Foundation
import Kernels

/// How the next token is chosen.
public struct SamplingParameters: Sendable, Equatable {
    /// 0 = greedy (reproducible for audit); > 0 samples from softmax(logits / temperature).
    public var temperature: Float
    /// Keep only the k most likely tokens (0 = no limit).
    public var topK: Int
    /// Keep the smallest set of tokens whose probability reaches top_p (1 = no limit).
    public var topP: Float
    /// Seed of the random generator (recorded in the audit log).
    public var seed: UInt64

    public init(temperature: Float = 0, topK: Int = 40, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    public static let greedy = SamplingParameters()
}

/// Picks tokens from logits and reports each chosen token's probability under the model's
/// own (untempered) distribution — the basis of the confidence score.
public struct Sampler: Sendable {
    public let parameters: SamplingParameters
    private var random: SplitMix64

    public init(_ parameters: SamplingParameters) {
        self.parameters = parameters
        self.random = SplitMix64(seed: parameters.seed)
    }

    /// The chosen token and its probability p(token) = softmax(logits)[token].
    public mutating func sample(_ logits: [Float]) -> (token: Int32, probability: Double) {
        logits.withUnsafeBufferPointer { buffer in
            let base = buffer.baseAddress!
            let n = Int64(buffer.count)
            let logSum = sl_logsumexp(base, n)
            let token = parameters.temperature <= 0 ? Int(sl_argmax(base, n)) : pick(buffer)
            return (Int32(token), exp(Double(buffer[token] - logSum)))
        }
    }

    private mutating func pick(_ logits: UnsafeBufferPointer<Float>) -> Int {
        let limit = parameters.topK > 0 ? min(parameters.topK, logits.count) : logits.count
        // The `limit` largest logits, largest first.
        var candidates: [(index: Int, logit: Float)]
        if limit < logits.count {
            var heap = MaxHeap<Candidate>()
            for (index, logit) in logits.enumerated() {
                heap.push(Candidate(index: index, logit: -logit))  // min-heap of the kept ones via negation
                if heap.count > limit { _ = heap.pop() }
            }
            candidates = []
            while let item = heap.pop() { candidates.append((item.index, -item.logit)) }
            candidates.reverse()
        } else {
            candidates = logits.enumerated().map { ($0.offset, $0.element) }.sorted { $0.1 > $1.1 }
        }
        let top = candidates[0].logit
        var weights = candidates.map { exp(Double(($0.logit - top) / parameters.temperature)) }
        let total = weights.reduce(0, +)
        weights = weights.map { $0 / total }
        if parameters.topP < 1 {
            var cumulative = 0.0
            var keep = 0
            while keep < weights.count {
                cumulative += weights[keep]
                keep += 1
                if cumulative >= Double(parameters.topP) { break }
            }
            weights = Array(weights.prefix(keep))
        }
        let sum = weights.reduce(0, +)
        var threshold = random.nextDouble() * sum
        for (offset, weight) in weights.enumerated() {
            threshold -= weight
            if threshold <= 0 { return candidates[offset].index }
        }
        return candidates[weights.count - 1].index
    }

    private struct Candidate: Comparable {
        let index: Int
        let logit: Float
        static func < (a: Candidate, b: Candidate) -> Bool { a.logit < b.logit || (a.logit == b.logit && a.index > b.index) }
    }
}

/// A small, seedable random generator (SplitMix64): the same seed gives the same tokens.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64

    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func nextDouble() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
