import Foundation
import Inference
import Testing

@Suite("Byte-level BPE tokenizer against llama.cpp")
struct BytePairTokenizerTests {
    struct Case: Decodable {
        let pre: String
        let text: String
        let parse_special: Bool
        let ids: [Int32]
    }

    /// The vocabulary is rebuilt by the same deterministic script the goldens were made with.
    @Test("ids equal llama.cpp's for the qwen2 and llama3 pre-tokenizers", arguments: ["qwen2", "llama3"])
    func goldens(pre: String) throws {
        let path = Repository.temporaryFile("bpe-\(pre).gguf")
        defer { try? FileManager.default.removeItem(atPath: path) }
        _ = try Repository.runPython("bpe_vocab.py", [path, pre])
        let tokenizer = try TokenizerLoader.load(from: GGUFFile(path: path))
        let cases = try RealModel.goldens("bpe_tokenizer.json", as: Case.self).filter { $0.pre == pre }
        #expect(cases.count >= 30)
        for golden in cases {
            let ids = tokenizer.encode(golden.text, addBOS: tokenizer.addsBOS, parseSpecial: golden.parse_special)
            #expect(ids == golden.ids, "\(pre) \(golden.text.debugDescription) special=\(golden.parse_special)")
            if !golden.parse_special { #expect(tokenizer.decode(ids) == golden.text) }
        }
    }
}
