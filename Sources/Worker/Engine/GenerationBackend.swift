import Foundation
import Inference

/// What the scheduler drives: a model that decodes many sequences a step at a time.
public protocol GenerationBackend: AnyObject {
    var identity: ModelIdentity { get }
    var activeCount: Int { get }
    /// The prompt's tokens as the model will see them.
    func tokenize(_ prompt: String) -> [Int32]
    /// Tokens of text that continues a prompt (no BOS), e.g. a candidate answer.
    func tokenizeContinuation(_ text: String) -> [Int32]
    func submit(_ id: Int, _ request: GenerationRequest) throws(InferenceError)
    func cancel(_ id: Int)
    func step() throws(InferenceError) -> [BatchGenerator.Event]
    /// Prompt positions computed so far, and those copied from the prefix cache instead.
    var prefillCounts: PrefillCounts { get }
}

extension GenerationBackend {
    /// None (a backend without a prompt to compute).
    public var prefillCounts: PrefillCounts { PrefillCounts() }
}

/// Cumulative prompt positions of a backend (metrics).
public struct PrefillCounts: Sendable, Equatable {
    public var computed = 0
    public var reused = 0
    /// Bytes the prefix cache holds.
    public var cacheBytes = 0

    public init(computed: Int = 0, reused: Int = 0, cacheBytes: Int = 0) {
        self.computed = computed
        self.reused = reused
        self.cacheBytes = cacheBytes
    }
}

/// A GGUF model behind a continuous-batching generator.
public final class ModelBackend: GenerationBackend {
    public let identity: ModelIdentity
    let model: any LanguageModel
    let generator: BatchGenerator

    /// Loads `path`, checking its SHA-256 when `expectedSHA256` is non-empty. `prefixCacheBytes`
    /// bounds the shared-prefix KV cache (0: none).
    public init(path: String, expectedSHA256: String, maxContext: Int, prefixCacheBytes: Int = 0) throws {
        let file = try GGUFFile(path: path)
        let sha = expectedSHA256.isEmpty ? file.sha256() : expectedSHA256.lowercased()
        if !expectedSHA256.isEmpty { try file.verify(sha256: expectedSHA256) }
        model = try ModelRegistry.load(file)
        generator = BatchGenerator(
            model: model, maxContext: maxContext, prefixCache: prefixCacheBytes > 0 ? PrefixCache(capacityBytes: prefixCacheBytes) : nil)
        let fileType = file.metadata["general.file_type"]?.intValue
        identity = ModelIdentity(
            name: model.config.name,
            quantization: fileType.map(Self.quantizationName) ?? "unknown",
            sha256: sha)
    }

    public var activeCount: Int { generator.activeCount }

    public func tokenize(_ prompt: String) -> [Int32] {
        model.tokenizer.encode(prompt, addBOS: model.tokenizer.addsBOS, parseSpecial: false)
    }

    public func tokenizeContinuation(_ text: String) -> [Int32] {
        model.tokenizer.encode(text, addBOS: false, parseSpecial: false)
    }

    public func submit(_ id: Int, _ request: GenerationRequest) throws(InferenceError) { try generator.submit(id, request) }
    public func cancel(_ id: Int) { generator.cancel(id) }
    public func step() throws(InferenceError) -> [BatchGenerator.Event] { try generator.step() }

    public var prefillCounts: PrefillCounts {
        let statistics = generator.prefixCache?.statistics
        return PrefillCounts(computed: generator.prefilledTokens, reused: statistics?.hitTokens ?? 0, cacheBytes: statistics?.bytes ?? 0)
    }

    /// llama.cpp's `general.file_type` names.
    static func quantizationName(_ fileType: Int) -> String {
        [0: "F32", 1: "F16", 2: "Q4_0", 7: "Q8_0", 8: "Q5_0", 12: "Q3_K_M", 14: "Q4_K_S", 15: "Q4_K_M", 16: "Q5_K_S", 17: "Q5_K_M", 18: "Q6_K", 32: "BF16"][fileType]
            ?? "file_type \(fileType)"
    }
}

/// `--model echo`: answers with the prompt at once, confidence 1. For pipeline benchmarks and
/// operators' smoke tests; it exercises everything but the model.
public final class EchoBackend: GenerationBackend {
    public let identity = ModelIdentity(name: "echo", quantization: "none", sha256: "")
    private var pending: [(Int, GenerationRequest)] = []

    public init() {}

    public var activeCount: Int { pending.count }
    public func tokenize(_ prompt: String) -> [Int32] { prompt.unicodeScalars.map { Int32(bitPattern: $0.value) } }
    public func tokenizeContinuation(_ text: String) -> [Int32] { tokenize(text) }
    public func submit(_ id: Int, _ request: GenerationRequest) throws(InferenceError) { pending.append((id, request)) }
    public func cancel(_ id: Int) { pending.removeAll { $0.0 == id } }

    public func step() throws(InferenceError) -> [BatchGenerator.Event] {
        defer { pending = [] }
        return pending.map { id, request in
            if let first = request.choices.first {
                // Extractive: the first choice, confidence 1.
                var completion = Completion(text: first.text, tokens: first.tokens, confidence: 1, minTokenProbability: 1,
                                            promptTokens: request.promptTokens.count, finishReason: .choice, timeToFirstToken: 0)
                completion.choice = 0
                completion.choiceScores = request.choices.map { _ in 0 }
                return .finished(id, completion)
            }
            let text = String(String.UnicodeScalarView(request.promptTokens.compactMap { Unicode.Scalar(UInt32(bitPattern: $0)) }))
            return .finished(id, Completion(
                text: text, tokens: request.promptTokens, confidence: 1, minTokenProbability: 1,
                promptTokens: request.promptTokens.count, finishReason: .endOfSequence, timeToFirstToken: 0))
        }
    }
}
