import Foundation

/// Byte-level BPE tokenizer (`tokenizer.ggml.model = gpt2`: Qwen2, DeepSeek, Llama 3).
///
/// Follows llama.cpp's BPE tokenizer: special tokens are split out first; the model's
/// pre-tokenizer regular expressions (`tokenizer.ggml.pre`) split the text into words; each
/// word's bytes are mapped to GPT-2's printable characters and merged pair by pair in the
/// order of `tokenizer.ggml.merges`.
public final class BytePairTokenizer: Tokenizer, @unchecked Sendable {  // immutable after init
    public let vocabularySize: Int
    public let bosID: Int32?
    public let eosID: Int32?
    public let addsBOS: Bool
    private let pieces: [String]
    private let kinds: [TokenKind]
    private let idByPiece: [String: Int32]
    private let ranks: [String: Int]
    private let specials: SpecialTokens
    private let splitters: [NSRegularExpression]
    /// Llama 3 style: a word that is itself a token is not merged.
    private let ignoresMerges: Bool
    private let endOfGeneration: Set<Int32>

    /// GPT-2's map from bytes to printable characters, and back.
    static let byteToCharacter: [Character] = {
        var printable = Array(33...126) + Array(161...172) + Array(174...255)
        var mapping = [Int: Int]()
        for byte in printable { mapping[byte] = byte }
        var next = 256
        for byte in 0...255 where mapping[byte] == nil {
            mapping[byte] = next
            next += 1
            printable.append(byte)
        }
        return (0...255).map { Character(Unicode.Scalar(UInt32(mapping[$0]!))!) }
    }()

    static let characterToByte: [Character: UInt8] = Dictionary(
        uniqueKeysWithValues: byteToCharacter.enumerated().map { ($0.element, UInt8($0.offset)) })

    /// Pre-tokenizer regular expressions by `tokenizer.ggml.pre` (as in llama.cpp).
    static func preTokenizer(_ name: String) -> (regexes: [String], ignoresMerges: Bool)? {
        let qwen2 = #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        let llama3 = #"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        switch name {
        case "qwen2", "deepseek-r1-qwen": return ([qwen2], false)
        case "llama3", "llama-bpe", "smaug-bpe", "dbrx": return ([llama3], true)
        case "gpt-2", "gpt2": return ([#"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#], false)
        case "deepseek-llm":
            return ([
                #"[\r\n]"#,
                #"\s?[A-Za-zµÀ-ÖØ-öø-ƺƼ-ƿǄ-ʓʕ-ʯͰ-ͳͶͷͻ-ͽͿΆΈ-ΊΌΎ-ΡΣ-ϵϷ-ҁҊ-ԯԱ-ՖႠ-ჅᎠ-Ᏽᏸ-ᏽᲐ-ᲺᲽ-Ჿᴀ-ᴫᵫ-ᵷᵹ-ᶚḀ-ἕἘ-Ἕἠ-ὅὈ-Ὅὐ-ὗὙὛὝὟ-ώᾀ-ᾴᾶ-ᾼιῂ-ῄῆ-ῌῐ-ΐῖ-Ίῠ-Ῥῲ-ῴῶ-ῼℂℇℊ-ℓℕℙ-ℝℤΩℨK-ℭℯ-ℴℹℼ-ℿⅅ-ⅉⅎↃↄⰀ-ⱻⱾ-ⳤⳫ-ⳮⳲⳳꙀ-ꙭꚀ-ꚛꜢ-ꝯꝱ-ꞇꞋ-ꞎꭰ-ꮿﬀ-ﬆﬓ-ﬗＡ-Ｚａ-ｚ𐐀-𐑏𐒰-𐓓𐓘-𐓻𐲀-𐲲𐳀-𐳲𑢠-𑣟𞤀-𞥃]+"#,
                #"\s?[!-/:-~！-／：-～‘-‟　-。]+"#,
                #"\s+$"#,
                #"[一-龥ࠀ-一가-퟿]+"#,
                #"\p{N}+"#,
            ], false)
        default: return nil
        }
    }

    init(pieces: [String], kinds: [TokenKind], merges: [String], preTokenizer: String, bosID: Int32?, eosID: Int32?,
         addsBOS: Bool, extraEndOfGeneration: [Int32]) throws(InferenceError) {
        guard let (patterns, ignoresMerges) = Self.preTokenizer(preTokenizer) else {
            throw InferenceError(.unsupportedArchitecture, "BPE pre-tokenizer '\(preTokenizer)' is not supported (supported: qwen2, deepseek-r1-qwen, llama3, deepseek-llm, gpt2)")
        }
        var splitters: [NSRegularExpression] = []
        for pattern in patterns {
            do { splitters.append(try NSRegularExpression(pattern: pattern)) } catch {
                throw InferenceError(.corrupt, "pre-tokenizer pattern: \(error)")
            }
        }
        self.splitters = splitters
        self.ignoresMerges = ignoresMerges
        self.pieces = pieces
        self.kinds = kinds
        self.vocabularySize = pieces.count
        self.bosID = bosID
        self.eosID = eosID
        self.addsBOS = addsBOS
        var idByPiece: [String: Int32] = [:]
        for (id, piece) in pieces.enumerated() where idByPiece[piece] == nil { idByPiece[piece] = Int32(id) }
        self.idByPiece = idByPiece
        var ranks: [String: Int] = [:]
        for (rank, merge) in merges.enumerated() where ranks[merge] == nil { ranks[merge] = rank }
        self.ranks = ranks
        self.specials = SpecialTokens(pieces: pieces.map { Array($0.utf8) }, kinds: kinds)
        self.endOfGeneration = Set([eosID].compactMap { $0 } + extraEndOfGeneration)
    }

    public func isEndOfGeneration(_ token: Int32) -> Bool { endOfGeneration.contains(token) }

    public func bytes(of token: Int32) -> [UInt8] {
        guard token >= 0, Int(token) < pieces.count else { return [] }
        switch kinds[Int(token)] {
        case .control, .unknown, .unused: return []
        case .userDefined: return Array(pieces[Int(token)].utf8)
        case .normal, .byte:
            return pieces[Int(token)].compactMap { Self.characterToByte[$0] }
        }
    }

    public func encode(_ text: String, addBOS: Bool, parseSpecial: Bool = false) -> [Int32] {
        var output: [Int32] = []
        if addBOS, let bosID { output.append(bosID) }
        for fragment in specials.partition(Array(text.utf8), parseSpecial: parseSpecial) {
            switch fragment {
            case .token(let id): output.append(id)
            case .text(let bytes):
                for word in split(String(decoding: bytes, as: UTF8.self)) { encodeWord(word, into: &output) }
            }
        }
        return output
    }

    /// Applies each pre-tokenizer pattern in turn; matched and unmatched stretches both
    /// become words (llama.cpp's `unicode_regex_split`).
    func split(_ text: String) -> [String] {
        var words = [text]
        for splitter in splitters {
            var next: [String] = []
            for word in words {
                let ns = word as NSString
                var cursor = 0
                for match in splitter.matches(in: word, range: NSRange(location: 0, length: ns.length)) where match.range.length > 0 {
                    if match.range.location > cursor {
                        next.append(ns.substring(with: NSRange(location: cursor, length: match.range.location - cursor)))
                    }
                    next.append(ns.substring(with: match.range))
                    cursor = match.range.location + match.range.length
                }
                if cursor < ns.length { next.append(ns.substring(from: cursor)) }
            }
            words = next
        }
        return words
    }

    private struct Bigram: Comparable {
        let left: Int
        let rank: Int
        let text: String
        /// Lowest rank first; on ties, the leftmost pair first.
        static func < (a: Bigram, b: Bigram) -> Bool { a.rank > b.rank || (a.rank == b.rank && a.left > b.left) }
    }

    private func encodeWord(_ word: String, into output: inout [Int32]) {
        let mapped = String(word.utf8.map { Self.byteToCharacter[Int($0)] })
        if ignoresMerges, let id = idByPiece[mapped] {
            output.append(id)
            return
        }
        var symbols = mapped.map { String($0) }
        var next = Array(1...symbols.count).map { $0 == symbols.count ? -1 : $0 }
        var previous = Array(-1..<(symbols.count - 1))
        var heap = MaxHeap<Bigram>()
        func tryAdd(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0, let rank = ranks[symbols[left] + " " + symbols[right]] else { return }
            heap.push(Bigram(left: left, rank: rank, text: symbols[left] + symbols[right]))
        }
        for index in 0..<(symbols.count - 1) { tryAdd(index, index + 1) }
        while let bigram = heap.pop() {
            let left = bigram.left
            let right = next[left]
            guard right >= 0, !symbols[left].isEmpty, symbols[left] + symbols[right] == bigram.text else { continue }
            symbols[left] = bigram.text
            symbols[right] = ""
            next[left] = next[right]
            if next[right] >= 0 { previous[next[right]] = left }
            tryAdd(previous[left], left)
            tryAdd(left, next[left])
        }
        var index = 0
        while index >= 0 {
            if let id = idByPiece[symbols[index]] {
                output.append(id)
            } else {
                for character in symbols[index] { if let id = idByPiece[String(character)] { output.append(id) } }
            }
            index = next[index]
        }
    }
}
