/// SentencePiece-style tokenizer (`tokenizer.ggml.model = llama`: Gemma, Llama).
///
/// Follows llama.cpp's SPM tokenizer: user-defined (and, when asked, control) tokens are split
/// out first, longest first; spaces become `▁`; then adjacent symbols are merged greedily by
/// the vocabulary score of their concatenation; symbols that are not tokens fall back to
/// `<0xXX>` byte tokens.
public final class SentencePieceTokenizer: Tokenizer, @unchecked Sendable {  // immutable after init
    public let vocabularySize: Int
    public let bosID: Int32?
    public let eosID: Int32?
    public let addsBOS: Bool
    let addSpacePrefix: Bool
    private let pieces: [[UInt8]]
    private let scores: [Float]
    private let kinds: [TokenKind]
    private let idByPiece: [[UInt8]: Int32]
    private let byteTokens: [Int32]
    private let specials: SpecialTokens
    private let endOfGeneration: Set<Int32>

    init(pieces: [[UInt8]], scores: [Float], kinds: [TokenKind], bosID: Int32?, eosID: Int32?, addsBOS: Bool,
         addSpacePrefix: Bool, extraEndOfGeneration: [Int32]) {
        self.pieces = pieces
        self.scores = scores
        self.kinds = kinds
        self.vocabularySize = pieces.count
        self.bosID = bosID
        self.eosID = eosID
        self.addsBOS = addsBOS
        self.addSpacePrefix = addSpacePrefix
        var idByPiece: [[UInt8]: Int32] = [:]
        idByPiece.reserveCapacity(pieces.count)
        for (id, piece) in pieces.enumerated() where idByPiece[piece] == nil { idByPiece[piece] = Int32(id) }
        self.idByPiece = idByPiece
        var byteTokens = [Int32](repeating: -1, count: 256)
        for (id, kind) in kinds.enumerated() where kind == .byte {
            // "<0xAB>"
            let text = String(decoding: pieces[id], as: UTF8.self)
            if text.count == 6, let value = UInt8(text.dropFirst(3).prefix(2), radix: 16) { byteTokens[Int(value)] = Int32(id) }
        }
        self.byteTokens = byteTokens
        self.specials = SpecialTokens(pieces: pieces, kinds: kinds)
        self.endOfGeneration = Set([eosID].compactMap { $0 } + extraEndOfGeneration)
    }

    public func isEndOfGeneration(_ token: Int32) -> Bool { endOfGeneration.contains(token) }

    public func bytes(of token: Int32) -> [UInt8] {
        guard token >= 0, Int(token) < pieces.count else { return [] }
        switch kinds[Int(token)] {
        case .control, .unknown, .unused: return []
        case .byte:
            let text = String(decoding: pieces[Int(token)], as: UTF8.self)
            return UInt8(text.dropFirst(3).prefix(2), radix: 16).map { [$0] } ?? []
        case .userDefined: return pieces[Int(token)]
        case .normal:
            // "▁" (E2 96 81) stands for a space.
            var result: [UInt8] = []
            let piece = pieces[Int(token)]
            var index = 0
            while index < piece.count {
                if index + 2 < piece.count, piece[index] == 0xE2, piece[index + 1] == 0x96, piece[index + 2] == 0x81 {
                    result.append(0x20)
                    index += 3
                } else {
                    result.append(piece[index])
                    index += 1
                }
            }
            return result
        }
    }

    public func encode(_ text: String, addBOS: Bool, parseSpecial: Bool = false) -> [Int32] {
        var output: [Int32] = []
        if addBOS, let bosID { output.append(bosID) }
        var previousWasSpecial = true
        for fragment in specials.partition(Array(text.utf8), parseSpecial: parseSpecial) {
            switch fragment {
            case .token(let id):
                output.append(id)
                previousWasSpecial = true
            case .text(let bytes):
                var escaped: [UInt8] = addSpacePrefix && previousWasSpecial ? [0xE2, 0x96, 0x81] : []
                for byte in bytes {
                    if byte == 0x20 { escaped += [0xE2, 0x96, 0x81] } else { escaped.append(byte) }
                }
                mergeSymbols(escaped, into: &output)
                previousWasSpecial = false
            }
        }
        return output
    }

    private struct Symbol {
        var start: Int
        var length: Int
        var previous: Int
        var next: Int
    }

    private struct Bigram: Comparable {
        let left: Int
        let right: Int
        let score: Float
        let length: Int

        /// Higher score first; on ties, the leftmost pair first.
        static func < (a: Bigram, b: Bigram) -> Bool {
            a.score < b.score || (a.score == b.score && a.left > b.left)
        }
    }

    private func mergeSymbols(_ text: [UInt8], into output: inout [Int32]) {
        guard !text.isEmpty else { return }
        var symbols: [Symbol] = []
        var offset = 0
        while offset < text.count {
            let lead = text[offset]
            let width = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1
            let length = min(width, text.count - offset)
            symbols.append(Symbol(start: offset, length: length, previous: symbols.count - 1, next: symbols.count + 1))
            offset += length
        }
        symbols[symbols.count - 1].next = -1
        var heap = MaxHeap<Bigram>()
        var merges: [[UInt8]: (Int, Int)] = [:]

        func tryAdd(_ left: Int, _ right: Int) {
            guard left >= 0, right >= 0 else { return }
            let piece = Array(text[symbols[left].start..<(symbols[left].start + symbols[left].length + symbols[right].length)])
            guard let id = idByPiece[piece] else { return }
            heap.push(Bigram(left: left, right: right, score: scores[Int(id)], length: piece.count))
            merges[piece] = (left, right)
        }

        for index in 1..<symbols.count { tryAdd(index - 1, index) }
        while let bigram = heap.pop() {
            let left = bigram.left
            let right = bigram.right
            // Skip pairs invalidated by an earlier merge.
            guard symbols[left].length > 0, symbols[right].length > 0,
                  symbols[left].length + symbols[right].length == bigram.length else { continue }
            symbols[left].length += symbols[right].length
            symbols[right].length = 0
            symbols[left].next = symbols[right].next
            if symbols[right].next >= 0 { symbols[symbols[right].next].previous = left }
            tryAdd(symbols[left].previous, left)
            tryAdd(left, symbols[left].next)
        }

        var index = 0
        while index != -1 {
            resegment(symbols[index].start, symbols[index].length, text, symbols, merges, &output)
            index = symbols[index].next
        }
    }

    private func resegment(_ start: Int, _ length: Int, _ text: [UInt8], _ symbols: [Symbol], _ merges: [[UInt8]: (Int, Int)], _ output: inout [Int32]) {
        let piece = Array(text[start..<(start + length)])
        if let id = idByPiece[piece] {
            output.append(id)
            return
        }
        if let (left, right) = merges[piece] {
            let leftLength = symbols[right].start - symbols[left].start
            resegment(start, leftLength, text, symbols, merges, &output)
            resegment(start + leftLength, length - leftLength, text, symbols, merges, &output)
            return
        }
        for byte in piece where byteTokens[Int(byte)] >= 0 { output.append(byteTokens[Int(byte)]) }
    }
}

/// A binary max-heap.
struct MaxHeap<Element: Comparable> {
    private var items: [Element] = []

    var count: Int { items.count }

    mutating func push(_ item: Element) {
        items.append(item)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[parent] < items[child] else { break }
            items.swapAt(parent, child)
            child = parent
        }
    }

    mutating func pop() -> Element? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var largest = parent
            if left < items.count, items[largest] < items[left] { largest = left }
            if right < items.count, items[largest] < items[right] { largest = right }
            if largest == parent { break }
            items.swapAt(parent, largest)
            parent = largest
        }
        return top
    }
}
