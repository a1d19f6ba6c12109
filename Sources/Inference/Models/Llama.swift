/// Llama (`general.architecture = llama`; also DeepSeek's LLM family).
///
/// Follows llama.cpp's llama graph: RMS pre-norm, Q/K/V projections, "normal" RoPE on
/// adjacent pairs (llama.cpp's converter permutes Q/K rows for it), Q·K/√head_dim softmax
/// attention with grouped KV heads, output projection and residual; RMS pre-norm, SiLU-gated
/// FFN and residual; final RMS norm and `output.weight` (or the tied embeddings).
public final class LlamaModel: LanguageModel, @unchecked Sendable {  // immutable after init
    static let traits = ArchitectureTraits(activation: .silu, rope: .normal)

    let transformer: DecoderTransformer

    public init(file: GGUFFile) throws(InferenceError) {
        transformer = try DecoderTransformer(file: file, architecture: "llama", traits: Self.traits)
    }

    public var config: ModelConfig { transformer.config }
    public var tokenizer: any Tokenizer { transformer.tokenizer }
    public var prefillChunk: Int { transformer.prefillChunk }
    public func makeCache(maxContext: Int) -> KVCache { transformer.makeCache(maxContext: maxContext) }
    public func forward(_ entries: [ForwardEntry]) throws(InferenceError) -> [[Float]] { try transformer.forward(entries) }
}
