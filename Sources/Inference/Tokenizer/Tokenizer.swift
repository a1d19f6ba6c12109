/// Turns text into token ids and token ids back into bytes, as the model's GGUF metadata
/// defines (`tokenizer.ggml.*`).
public protocol Tokenizer: Sendable {
    var vocabularySize: Int { get }
    var bosID: Int32? { get }
    var eosID: Int32? { get }
    /// Whether the model expects BOS before a prompt (`tokenizer.ggml.add_bos_token`).
    var addsBOS: Bool { get }

    /// The ids of `text`; control tokens written in the text (`<start_of_turn>`) are parsed
    /// only when `parseSpecial` is true.
    func encode(_ text: String, addBOS: Bool, parseSpecial: Bool) -> [Int32]

    /// The bytes a token stands for when decoding (empty for control tokens).
    func bytes(of token: Int32) -> [UInt8]

    /// True for tokens that end generation (EOS, end-of-turn).
    func isEndOfGeneration(_ token: Int32) -> Bool
}

extension Tokenizer {
    /// Decodes a whole sequence (invalid UTF-8 is replaced).
    public func decode(_ tokens: [Int32]) -> String {
        String(decoding: tokens.flatMap { bytes(of: $0) }, as: UTF8.self)
    }
}

/// Kinds of tokens, as `tokenizer.ggml.token_type` numbers them.
enum TokenKind: Int {
    case normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

/// Decodes tokens one at a time, emitting text only once its UTF-8 is complete, so a
/// character split across tokens (Chinese, emoji, byte-fallback tokens) is never cut.
public struct StreamingDecoder: Sendable {
    private var pending: [UInt8] = []

    public init() {}

    /// The text completed by `token` (possibly empty).
    public mutating func append(_ token: Int32, tokenizer: any Tokenizer) -> String {
        pending += tokenizer.bytes(of: token)
        let complete = Self.completePrefixLength(pending)
        guard complete > 0 else { return "" }
        let text = String(decoding: pending[..<complete], as: UTF8.self)
        pending.removeFirst(complete)
        return text
    }

    /// Whatever is left (an incomplete sequence becomes U+FFFD).
    public mutating func finish() -> String {
        defer { pending = [] }
        return pending.isEmpty ? "" : String(decoding: pending, as: UTF8.self)
    }

    /// Length of the longest prefix that does not end inside a UTF-8 sequence.
    static func completePrefixLength(_ bytes: [UInt8]) -> Int {
        var index = bytes.count - 1
        var continuation = 0
        while index >= 0, bytes[index] & 0xC0 == 0x80, continuation < 3 {
            index -= 1
            continuation += 1
        }
        guard index >= 0 else { return bytes.count }
        let lead = bytes[index]
        let needed = lead >= 0xF0 ? 3 : lead >= 0xE0 ? 2 : lead >= 0xC0 ? 1 : 0
        return needed > continuation ? index : bytes.count
    }
}
