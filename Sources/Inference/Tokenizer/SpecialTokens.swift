/// Splits special tokens out of text before the subword algorithm runs, like llama.cpp's
/// `tokenizer_st_partition`: user-defined tokens always, control tokens only when asked,
/// longest first.
struct SpecialTokens: Sendable {
    enum Fragment {
        case text([UInt8])
        case token(Int32)
    }

    private let specials: [(bytes: [UInt8], id: Int32, isControl: Bool)]

    init(pieces: [[UInt8]], kinds: [TokenKind]) {
        specials = kinds.enumerated()
            .filter { [.control, .userDefined, .unknown].contains($0.element) && !pieces[$0.offset].isEmpty }
            .map { (pieces[$0.offset], Int32($0.offset), $0.element != .userDefined) }
            .sorted { $0.bytes.count > $1.bytes.count }
    }

    func partition(_ text: [UInt8], parseSpecial: Bool) -> [Fragment] {
        var fragments: [Fragment] = text.isEmpty ? [] : [.text(text)]
        for special in specials where parseSpecial || !special.isControl {
            var next: [Fragment] = []
            for fragment in fragments {
                guard case .text(let bytes) = fragment, bytes.count >= special.bytes.count else {
                    next.append(fragment)
                    continue
                }
                var start = 0
                var index = 0
                while index + special.bytes.count <= bytes.count {
                    if bytes[index] == special.bytes[0], bytes[index..<(index + special.bytes.count)].elementsEqual(special.bytes) {
                        if index > start { next.append(.text(Array(bytes[start..<index]))) }
                        next.append(.token(special.id))
                        index += special.bytes.count
                        start = index
                    } else {
                        index += 1
                    }
                }
                if start < bytes.count { next.append(.text(Array(bytes[start...]))) }
            }
            fragments = next
        }
        return fragments
    }
}
