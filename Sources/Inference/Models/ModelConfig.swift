/// A decoder-only transformer's hyperparameters, read from GGUF metadata
/// (`<architecture>.*` keys).
public struct ModelConfig: Sendable, Equatable {
    public var architecture: String
    public var name: String
    public var embeddingLength: Int
    public var blockCount: Int
    public var feedForwardLength: Int
    public var headCount: Int
    public var headCountKV: Int
    /// Per-head dimension of queries and keys.
    public var headDim: Int
    public var contextLength: Int
    public var rmsEpsilon: Float
    /// RoPE base of global-attention layers.
    public var ropeBase: Float
    /// RoPE base of sliding-window layers (Gemma 3: 10,000).
    public var ropeBaseLocal: Float
    /// Sliding-window size, or 0 for full attention everywhere.
    public var slidingWindow: Int
    /// Every `slidingWindowPattern`-th layer is global (Gemma 3: 6 → layers 5, 11, 17).
    public var slidingWindowPattern: Int
    public var vocabularySize: Int

    /// True when layer `index` attends only to the last `slidingWindow` positions.
    public func isSlidingWindowLayer(_ index: Int) -> Bool {
        slidingWindow > 0 && slidingWindowPattern > 0 && index % slidingWindowPattern < slidingWindowPattern - 1
    }

    init(file: GGUFFile, architecture: String) throws(InferenceError) {
        let metadata = file.metadata
        func integer(_ key: String) throws(InferenceError) -> Int {
            guard let value = metadata["\(architecture).\(key)"]?.intValue else {
                throw InferenceError(.missingTensor, "\(file.path) has no \(architecture).\(key)")
            }
            return value
        }
        self.architecture = architecture
        self.name = metadata["general.name"]?.stringValue ?? architecture
        embeddingLength = try integer("embedding_length")
        blockCount = try integer("block_count")
        feedForwardLength = try integer("feed_forward_length")
        headCount = try integer("attention.head_count")
        headCountKV = metadata["\(architecture).attention.head_count_kv"]?.intValue ?? headCount
        headDim = metadata["\(architecture).attention.key_length"]?.intValue ?? embeddingLength / max(headCount, 1)
        contextLength = metadata["\(architecture).context_length"]?.intValue ?? 4096
        rmsEpsilon = Float(metadata["\(architecture).attention.layer_norm_rms_epsilon"]?.doubleValue ?? 1e-6)
        ropeBase = Float(metadata["\(architecture).rope.freq_base"]?.doubleValue ?? 10_000)
        ropeBaseLocal = Float(metadata["\(architecture).rope.freq_base_swa"]?.doubleValue ?? 10_000)
        slidingWindow = metadata["\(architecture).attention.sliding_window"]?.intValue ?? 0
        slidingWindowPattern = metadata["\(architecture).attention.sliding_window_pattern"]?.intValue ?? 6
        vocabularySize = metadata["tokenizer.ggml.tokens"]?.arrayValue?.count ?? 0
        guard headCount > 0, headCountKV > 0, headCount % headCountKV == 0, headDim > 0, blockCount > 0, embeddingLength > 0 else {
            throw InferenceError(.corrupt, "\(file.path): inconsistent attention shape")
        }
    }
}
