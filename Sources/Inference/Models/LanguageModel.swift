/// One sequence's share of a forward pass: its new tokens, appended at `cache.length`.
public struct ForwardEntry {
    public let cache: KVCache
    public let tokens: [Int32]
    /// Whether to compute logits for the last of `tokens`.
    public let wantsLogits: Bool
    /// Compute this entry's matrix products in float against dequantized weights (OpenBLAS
    /// sgemm) rather than with int8 activations: faster for long prompts. For batching to stay
    /// exact, decide it from the sequence alone (e.g. its prompt length), never from the batch.
    public let dense: Bool
    /// Scoring instead of logits: when set (one target per token), the entry's result row
    /// holds log p(targets[i] | …, tokens[i]) for every i rather than the last token's logits.
    public let targets: [Int32]?

    public init(cache: KVCache, tokens: [Int32], wantsLogits: Bool, dense: Bool = false, targets: [Int32]? = nil) {
        self.cache = cache
        self.tokens = tokens
        self.wantsLogits = wantsLogits || targets != nil
        self.dense = dense
        self.targets = targets
    }
}

/// A decoder-only language model that runs many sequences in one forward pass.
public protocol LanguageModel: AnyObject, Sendable {
    var config: ModelConfig { get }
    var tokenizer: any Tokenizer { get }
    /// Longest prompt chunk one forward pass takes per sequence.
    var prefillChunk: Int { get }

    /// A fresh cache for one sequence of at most `maxContext` positions.
    func makeCache(maxContext: Int) -> KVCache

    /// Appends each entry's tokens to its cache and returns, for every entry that wants them,
    /// the logits of its last token — or, for a scoring entry (``ForwardEntry/targets``), the
    /// log-probabilities of its targets — in entry order.
    func forward(_ entries: [ForwardEntry]) throws(InferenceError) -> [[Float]]
}

/// Which implementation serves a GGUF `general.architecture`.
public enum ModelRegistry {
    public static let architectures: [String: @Sendable (GGUFFile) throws(InferenceError) -> any LanguageModel] = [
        "gemma3": { file throws(InferenceError) in try Gemma3Model(file: file) },
        "llama": { file throws(InferenceError) in try LlamaModel(file: file) },
        "qwen2": { file throws(InferenceError) in try Qwen2Model(file: file) },
    ]

    /// Loads the model in `file`, or fails naming the unsupported architecture.
    public static func load(_ file: GGUFFile) throws(InferenceError) -> any LanguageModel {
        guard let architecture = file.architecture else {
            throw InferenceError(.corrupt, "\(file.path) has no general.architecture")
        }
        guard let loader = architectures[architecture] else {
            throw InferenceError(
                .unsupportedArchitecture,
                "architecture '\(architecture)' is not supported (supported: \(architectures.keys.sorted().joined(separator: ", ")))")
        }
        return try loader(file)
    }
}
