/// Builds the tokenizer a GGUF file describes.
public enum TokenizerLoader {
    /// Texts of tokens that end a turn in common chat formats; treated as end of generation
    /// when the vocabulary has them (as llama.cpp does).
    static let endOfTurnTexts = ["<end_of_turn>", "<|im_end|>", "<|eot_id|>", "<|endoftext|>", "<｜end▁of▁sentence｜>"]

    public static func load(from file: GGUFFile) throws(InferenceError) -> any Tokenizer {
        let metadata = file.metadata
        guard let model = metadata["tokenizer.ggml.model"]?.stringValue else {
            throw InferenceError(.missingTensor, "\(file.path) has no tokenizer.ggml.model")
        }
        guard let tokenValues = metadata["tokenizer.ggml.tokens"]?.arrayValue, !tokenValues.isEmpty else {
            throw InferenceError(.missingTensor, "\(file.path) has no tokenizer.ggml.tokens")
        }
        let pieces = tokenValues.map { Array(($0.stringValue ?? "").utf8) }
        let kinds = (metadata["tokenizer.ggml.token_type"]?.arrayValue ?? []).map { TokenKind(rawValue: $0.intValue ?? 1) ?? .normal }
        guard kinds.isEmpty || kinds.count == pieces.count else {
            throw InferenceError(.corrupt, "\(file.path): token_type has \(kinds.count) entries for \(pieces.count) tokens")
        }
        let tokenKinds = kinds.isEmpty ? [TokenKind](repeating: .normal, count: pieces.count) : kinds
        let bos = metadata["tokenizer.ggml.bos_token_id"]?.intValue.map(Int32.init)
        let eos = metadata["tokenizer.ggml.eos_token_id"]?.intValue.map(Int32.init)
        let endOfTurn = pieces.enumerated()
            .filter { endOfTurnTexts.contains(String(decoding: $0.element, as: UTF8.self)) }
            .map { Int32($0.offset) }
        switch model {
        case "llama":
            let scores = (metadata["tokenizer.ggml.scores"]?.arrayValue ?? []).map { Float($0.doubleValue ?? 0) }
            return SentencePieceTokenizer(
                pieces: pieces,
                scores: scores.count == pieces.count ? scores : [Float](repeating: 0, count: pieces.count),
                kinds: tokenKinds,
                bosID: bos,
                eosID: eos,
                addsBOS: metadata["tokenizer.ggml.add_bos_token"]?.boolValue ?? true,
                addSpacePrefix: metadata["tokenizer.ggml.add_space_prefix"]?.boolValue ?? true,
                extraEndOfGeneration: endOfTurn
            )
        case "gpt2":
            guard let merges = metadata["tokenizer.ggml.merges"]?.arrayValue?.compactMap(\.stringValue) else {
                throw InferenceError(.missingTensor, "\(file.path) has no tokenizer.ggml.merges")
            }
            return try BytePairTokenizer(
                pieces: pieces.map { String(decoding: $0, as: UTF8.self) },
                kinds: tokenKinds,
                merges: merges,
                preTokenizer: metadata["tokenizer.ggml.pre"]?.stringValue ?? "gpt2",
                bosID: bos,
                eosID: eos,
                addsBOS: metadata["tokenizer.ggml.add_bos_token"]?.boolValue ?? false,
                extraEndOfGeneration: endOfTurn
            )
        default:
            throw InferenceError(.unsupportedArchitecture, "tokenizer model '\(model)' is not supported (supported: llama, gpt2)")
        }
    }
}
