import Foundation
import Testing

/// `sluice model …` on the real model file installed by ops/bootstrap.
@Suite("Integration: sluice model command line")
struct ModelCLITests {
    static let model = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("models/gemma-3-270m-q4_k_m.gguf").path

    static func json(_ output: CLITests.Output) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(output.stdout.utf8)) as? [String: Any], "\(output.stdout)\(output.stderr)")
    }

    @Test("model info names the architecture, tokenizer, quant types and the file's SHA-256")
    func info() async throws {
        let output = try await CLITests.sluice(["model", "info", Self.model, "--json"])
        #expect(output.status == 0, "\(output.stderr)")
        let info = try Self.json(output)
        #expect(info["architecture"] as? String == "gemma3")
        #expect(info["tokenizer"] as? String == "llama")
        #expect(info["supported"] as? String == "yes")
        #expect((info["tensor_types"] as? String)?.contains("Q4_K") == true)
        #expect(info["sha256"] as? String == "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")
    }

    @Test("model generate answers with text, tokens and confidence")
    func generate() async throws {
        let output = try await CLITests.sluice([
            "model", "generate", "--model", Self.model, "--prompt", "The capital of France is Paris. The capital of Germany is",
            "--max-tokens", "4", "--json",
        ])
        #expect(output.status == 0, "\(output.stderr)")
        let result = try Self.json(output)
        #expect((result["text"] as? String)?.hasPrefix(" Berlin") == true)
        #expect((result["tokens"] as? [Int])?.count == 4)
        #expect(result["completion_tokens"] as? Int == 4)
        #expect(result["prompt_tokens"] as? Int == 13)
        let confidence = try #require(result["confidence"] as? Double)
        let minimum = try #require(result["min_token_prob"] as? Double)
        #expect(confidence > 0 && confidence <= 1 && minimum <= confidence)
    }

    @Test("model bench reports prefill, decode per batch size and peak RSS")
    func bench() async throws {
        let output = try await CLITests.sluice(["model", "bench", "--model", Self.model, "--steps", "2", "--batches", "1,2", "--repetitions", "1", "--json"])
        #expect(output.status == 0, "\(output.stderr)")
        let result = try Self.json(output)
        #expect((result["prefill_tokens_per_s"] as? Double ?? 0) > 0)
        let decode = try #require(result["decode_tokens_per_s"] as? [String: Double])
        #expect(Set(decode.keys) == ["1", "2"])
        #expect((result["peak_rss_bytes"] as? Int ?? 0) > 0)
    }

    @Test("a corrupt model file is a clear error, not a crash")
    func corrupt() async throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("sluice-corrupt-\(UUID()).gguf").path
        try Data(repeating: 7, count: 4096).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let output = try await CLITests.sluice(["model", "generate", "--model", path, "--prompt", "hi"])
        #expect(output.status == 1)
        #expect(output.stderr.contains("is not a GGUF file"))
    }
}
