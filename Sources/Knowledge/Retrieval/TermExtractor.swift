/// Turns text into the index's terms, the same way for stored entries and for questions, so
/// that English and Chinese both retrieve: English (and other space-separated scripts) as
/// lower-cased words without common stop words; Chinese, Japanese and Korean — written
/// without spaces — as overlapping character bigrams (a single character alone when a run has
/// only one). Digits are kept as words ("95588", "50,000" → "50000"). English words are
/// reduced to a crude stem (``stem(_:)``) so that "opens", "opening" and "open" meet.
public enum TermExtractor {
    public static func terms(_ text: String) -> [String] {
        var terms: [String] = []
        var word = ""
        var run: [Character] = []
        func flushWord() {
            if !word.isEmpty, !stopWords.contains(word) { terms.append(stem(word)) }
            word = ""
        }
        func flushRun() {
            if run.count == 1 {
                if !stopCharacters.contains(run[0]) { terms.append(String(run[0])) }
            } else if run.count > 1 {
                for index in 0..<(run.count - 1) {
                    let bigram = String(run[index...index + 1])
                    // A particle glues two words together ("利率是多少" → "率是"): such a bigram names neither.
                    if !stopBigrams.contains(bigram), !run[index...index + 1].contains(where: stopCharacters.contains) { terms.append(bigram) }
                }
            }
            run = []
        }
        for character in text.lowercased() {
            if isIdeographic(character) {
                flushWord()
                run.append(character)
            } else if character.isLetter || character.isNumber {
                flushRun()
                word.append(character)
            } else if character == ",", word.allSatisfy(\.isNumber), !word.isEmpty {
                continue  // thousands separators: 50,000 → 50000
            } else {
                flushWord()
                flushRun()
            }
        }
        flushWord()
        flushRun()
        return terms
    }

    /// A light suffix stripper for English (plural -s/-es/-ies, -ing, -ed, a final -e, a
    /// doubled final consonant). Not a linguistic stemmer: it only has to map a question's
    /// word and the entry's word to the same string, and it is applied to both.
    public static func stem(_ word: String) -> String {
        guard word.count > 3, word.unicodeScalars.allSatisfy({ $0.isASCII }), !word.allSatisfy(\.isNumber) else { return word }
        var w = Array(word)
        func ends(_ suffix: String) -> Bool { w.count > suffix.count && w.suffix(suffix.count) == Array(suffix)[...] }
        if ends("ies"), w.count > 4 {
            w.removeLast(3)
            w.append("y")
        } else if ends("sses") {
            w.removeLast(2)
        } else if ends("s"), !ends("ss"), !ends("us"), !ends("is") {
            w.removeLast()
        }
        if ends("ing"), w.count - 3 >= 3 {
            w.removeLast(3)
        } else if ends("ed"), w.count - 2 >= 3 {
            w.removeLast(2)
        }
        if ends("e"), w.count > 3 { w.removeLast() }
        if w.count > 3, let last = w.last, w[w.count - 2] == last, !"aeioulsz".contains(last) { w.removeLast() }
        return String(w)
    }

    static func isIdeographic(_ character: Character) -> Bool {
        guard let scalar = character.unicodeScalars.first else { return false }
        switch scalar.value {
        case 0x3040...0x30FF, 0x3400...0x4DBF, 0x4E00...0x9FFF, 0xAC00...0xD7AF, 0xF900...0xFAFF: return true
        default: return false
        }
    }

    /// Words that carry no meaning for retrieval.
    static let stopWords: Set<String> = [
        "a", "an", "the", "is", "are", "was", "be", "to", "of", "in", "on", "for", "and", "or", "my", "i", "me", "you",
        "your", "it", "do", "does", "can", "how", "what", "when", "where", "which", "who", "with", "at", "by", "from",
        "this", "that", "there", "please", "much", "many", "if", "as", "we", "our", "us", "am", "will", "would", "should",
        "get", "got", "any", "have", "has", "some", "someone", "tell", "about", "know", "want", "need", "like", "could", "may",
        "after", "before", "then", "than", "also", "just", "they", "them", "their", "its", "into", "so", "not", "no", "yes",
    ]

    /// Chinese question words and particles: bigrams that say a question is asked, not what
    /// about ("多少" how much, "怎么" how, "什么" what, "可以" can, "请问" may I ask…).
    static let stopBigrams: Set<String> = [
        "多少", "是多", "少钱", "怎么", "么办", "什么", "如何", "可以", "请问", "能不", "不能", "是否", "有没", "没有", "哪些", "几点", "一下",
    ]

    /// Single characters that carry no meaning alone.
    static let stopCharacters: Set<Character> = ["的", "了", "吗", "呢", "我", "是", "在", "有", "和", "么", "吧", "啊"]
}
