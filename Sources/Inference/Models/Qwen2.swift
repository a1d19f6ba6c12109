/// Qwen2 (`general.architecture = qwen2`; DeepSeek-R1-Distill-Qwen models).
///
/// Follows llama.cpp's qwen2 graph: like Llama, plus biases on the Q, K and V projections,
/// and NEOX RoPE (rotating pairs i and i + head_dim/2).
public final class Qwen2Model: LanguageModel, @unchecked Sendable {  // immutable after init
    static let traits = ArchitectureTraits(activation: .silu, rope: .neox)

    let transformer: DecoderTransformer

    public init(file: GGUFFile) throws(InferenceError) {
        transformer = try DecoderTransformer(file: file, architecture: "qwen2", traits: Self.traits)
    }

    public var config: ModelConfig { transformer.config }
    public var tokenizer: any Tokenizer { transformer.tokenizer }
    public var prefillChunk: Int { transformer.prefillChunk }
    public func makeCache(maxContext: Int) -> KVCache { transformer.makeCache(maxContext: maxContext) }
    public func forward(_ entries: [ForwardEntry]) throws(InferenceError) -> [[Float]] { try transformer.forward(entries) }
}
