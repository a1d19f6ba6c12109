import ArgumentParser
import Foundation
import Inference
import Kernels

struct ModelCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "model",
        abstract: "Inspect, run and benchmark a GGUF model.",
        subcommands: [ModelInfoCommand.self, ModelGenerateCommand.self, ModelBenchCommand.self]
    )
}

struct ModelInfoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "info", abstract: "Architecture, sizes, quant types, tokenizer and SHA-256 of a GGUF file.")

    @Argument(help: "The GGUF file.") var file: String
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        let gguf = try GGUFFile(path: file)
        let metadata = gguf.metadata
        var types: [String: Int] = [:]
        var parameters = 0
        for tensor in gguf.tensors.values {
            types[tensor.type.description, default: 0] += 1
            parameters += tensor.elementCount
        }
        let architecture = gguf.architecture ?? "?"
        func meta(_ key: String) -> String {
            guard let value = metadata["\(architecture).\(key)"] else { return "-" }
            return value.intValue.map(String.init) ?? value.doubleValue.map { "\($0)" } ?? "\(value)"
        }
        let info: [(String, String)] = [
            ("file", file),
            ("architecture", architecture),
            ("name", metadata["general.name"]?.stringValue ?? "-"),
            ("gguf_version", String(gguf.version)),
            ("file_bytes", String(gguf.fileSize)),
            ("parameters", String(parameters)),
            ("tensors", String(gguf.tensors.count)),
            ("tensor_types", types.sorted { $0.key < $1.key }.map { "\($0.key)×\($0.value)" }.joined(separator: " ")),
            ("layers", meta("block_count")),
            ("embedding", meta("embedding_length")),
            ("feed_forward", meta("feed_forward_length")),
            ("heads", meta("attention.head_count")),
            ("kv_heads", meta("attention.head_count_kv")),
            ("context", meta("context_length")),
            ("sliding_window", meta("attention.sliding_window")),
            ("rope_base", meta("rope.freq_base")),
            ("tokenizer", metadata["tokenizer.ggml.model"]?.stringValue ?? "-"),
            ("vocabulary", String(metadata["tokenizer.ggml.tokens"]?.arrayValue?.count ?? 0)),
            ("supported", ModelRegistry.architectures[architecture] != nil ? "yes" : "no"),
            ("simd", String(cString: sl_simd_level())),
            ("sha256", gguf.sha256()),
        ]
        if json {
            let object = Dictionary(uniqueKeysWithValues: info)
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self))
        } else {
            for (key, value) in info { print("\(key.padding(toLength: 14, withPad: " ", startingAt: 0)) \(value)") }
        }
    }
}

struct ModelGenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "generate", abstract: "Complete a prompt.")

    @Option(help: "The GGUF file.") var model: String
    @Option(help: "The prompt.") var prompt: String
    @Option(name: .customLong("max-tokens")) var maxTokens = 64
    @Option(help: "0 = greedy.") var temperature: Float = 0
    @Option(name: .customLong("top-k")) var topK = 40
    @Option(name: .customLong("top-p")) var topP: Float = 1
    @Option(help: "Random seed (with --temperature > 0).") var seed: UInt64 = 0
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        ComputePool.reuseLargeAllocations()
        let loaded = try ModelRegistry.load(GGUFFile(path: model))
        let tokens = loaded.tokenizer.encode(prompt, addBOS: loaded.tokenizer.addsBOS, parseSpecial: true)
        let generator = BatchGenerator(model: loaded)
        let request = GenerationRequest(
            promptTokens: tokens, maxTokens: maxTokens,
            sampling: SamplingParameters(temperature: temperature, topK: topK, topP: topP, seed: seed))
        let completion = try generator.complete(request)
        if json {
            let object: [String: Any] = [
                "text": completion.text, "tokens": completion.tokens.map(Int.init), "confidence": completion.confidence,
                "min_token_prob": completion.minTokenProbability, "prompt_tokens": completion.promptTokens,
                "completion_tokens": completion.completionTokens, "finish_reason": completion.finishReason.rawValue,
            ]
            print(String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]), as: UTF8.self))
        } else {
            print(prompt + completion.text)
            FileHandle.standardError.write(Data(String(
                format: "[%d prompt + %d completion tokens, confidence %.3f, min token p %.3f, %@]\n",
                completion.promptTokens, completion.completionTokens, completion.confidence, completion.minTokenProbability,
                completion.finishReason.rawValue).utf8))
        }
    }
}
