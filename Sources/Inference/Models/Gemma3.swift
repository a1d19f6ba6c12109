/// Gemma 3 (`general.architecture = gemma3`).
///
/// Follows llama.cpp's gemma3 graph: embeddings scaled by √d; per layer an RMS pre-norm,
/// Q/K/V projections, per-head RMS norm of Q and K, NEOX RoPE (base 10,000 on sliding-window
/// layers, `rope.freq_base` on every sixth, global layer), Q scaled by 1/√head_dim, softmax
/// attention (local layers see the last `sliding_window` positions), output projection,
/// post-attention norm and residual; then RMS pre-norm, GELU(tanh)-gated FFN, post-FFN norm
/// and residual. Final RMS norm; the output matrix is tied to `token_embd`. GGUF norm weights
/// already include Gemma's `1 +` offset.
public final class Gemma3Model: LanguageModel, @unchecked Sendable {  // immutable after init
    static let traits = ArchitectureTraits(
        scalesEmbeddings: true, normalisesQueryKey: true, postNorms: true, activation: .geluTanh, rope: .neox)

    let transformer: DecoderTransformer

    public init(file: GGUFFile) throws(InferenceError) {
        transformer = try DecoderTransformer(file: file, architecture: "gemma3", traits: Self.traits)
    }

    public var config: ModelConfig { transformer.config }
    public var tokenizer: any Tokenizer { transformer.tokenizer }
    public var prefillChunk: Int { transformer.prefillChunk }
    public func makeCache(maxContext: Int) -> KVCache { transformer.makeCache(maxContext: maxContext) }
    public func forward(_ entries: [ForwardEntry]) throws(InferenceError) -> [[Float]] { try transformer.forward(entries) }
}
