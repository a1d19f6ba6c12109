import Foundation
import Inference
import Testing

/// Damaged files give a clear error, never a crash.
@Suite("GGUF reader: truncated and corrupt files")
struct GGUFErrorTests {
    /// The first `length` bytes of the real model, as a new file.
    private func prefix(_ length: Int) throws -> String {
        let handle = try FileHandle(forReadingFrom: URL(fileURLWithPath: Repository.model))
        let data = try handle.read(upToCount: length) ?? Data()
        let path = Repository.temporaryFile("prefix.gguf")
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test("files cut inside the header, the metadata, the tensor table or the data are reported as truncated",
          arguments: [10, 30, 5_000, 7_000_000, 200_000_000])
    func truncated(length: Int) throws {
        let path = try prefix(length)
        defer { try? FileManager.default.removeItem(atPath: path) }
        do {
            _ = try GGUFFile(path: path)
            Issue.record("a \(length)-byte prefix was accepted")
        } catch {
            #expect(error.code == .truncated || error.code == .corrupt, "\(error)")
        }
    }

    @Test("wrong magic, unknown version and an empty file are named")
    func corrupt() throws {
        let cases: [(Data, InferenceError.Code)] = [
            (Data("not a model file at all, just text padding padding".utf8), .corrupt),
            (Data([0x47, 0x47, 0x55, 0x46, 9, 0, 0, 0] + [UInt8](repeating: 0, count: 24)), .unsupportedVersion),
            (Data(), .truncated),
        ]
        for (bytes, code) in cases {
            let path = Repository.temporaryFile("bad.gguf")
            try bytes.write(to: URL(fileURLWithPath: path))
            defer { try? FileManager.default.removeItem(atPath: path) }
            do {
                _ = try GGUFFile(path: path)
                Issue.record("accepted \(bytes.count) bad bytes")
            } catch {
                #expect(error.code == code, "\(error)")
            }
        }
        #expect(throws: InferenceError.self) { try GGUFFile(path: "/nonexistent/model.gguf") }
    }

    @Test("a file whose SHA-256 differs from the configured one is refused")
    func checksum() throws {
        let file = try GGUFFile(path: Repository.model)
        try file.verify(sha256: "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")
        do {
            try file.verify(sha256: String(repeating: "0", count: 64))
            Issue.record("a wrong checksum was accepted")
        } catch {
            #expect(error.code == .checksumMismatch)
        }
    }

    @Test("an unsupported architecture or tensor type is named")
    func unsupported() throws {
        let output = try Repository.runPython("make_unsupported.py", [Repository.temporaryFile("unsupported")])
        let paths = String(decoding: output, as: UTF8.self).split(separator: "\n").map(String.init)
        do {
            _ = try ModelRegistry.load(GGUFFile(path: paths[0]))
            Issue.record("an unknown architecture loaded")
        } catch {
            #expect(error.code == .unsupportedArchitecture)
            #expect(error.message.contains("'mamba'"))
        }
        do {
            _ = try GGUFFile(path: paths[1])
            Issue.record("an unsupported tensor type loaded")
        } catch {
            #expect(error.code == .unsupportedTensorType)
            #expect(error.message.contains("Q2_K"))
        }
    }

    @Test("the streaming decoder never splits a character across tokens")
    func streamingDecoder() throws {
        let tokenizer = try RealModel.load().tokenizer
        let text = "卡片💳已冻结 ✅ naïve"
        let ids = tokenizer.encode(text, addBOS: false, parseSpecial: false)
        var decoder = StreamingDecoder()
        var pieces: [String] = []
        for id in ids { pieces.append(decoder.append(id, tokenizer: tokenizer)) }
        pieces.append(decoder.finish())
        #expect(pieces.joined() == text)
        #expect(pieces.allSatisfy { !$0.contains("\u{FFFD}") })
    }
}
