import Foundation
import Inference
import Kernels
import Testing

/// The integer kernels (quantized activations) and the float kernels against an independent
/// reference — the `gguf` package's dequantization and a numpy float64 product — on the real
/// model's tensors of every quantized type it has.
@Suite("Quantized dot products")
struct QuantizedDotTests {
    @Test("float and integer kernels agree with gguf + numpy: float to 1e-4, integer within the activation quantization error")
    func agreesWithReference() throws {
        let file = try GGUFFile(path: Repository.model)
        let names = ["blk.0.attn_q.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_down.weight", "token_embd.weight"]
        var random = SplitMix64(seed: 3)
        let rows = 64
        let batch = 14  // activation rows in a block of eight, one of four, and two single ones
        let activations = try names.map { name in
            (0..<(try file.tensor(name).rowLength * batch)).map { _ in Float(Double(random.next() % 2001) / 1000 - 1) }
        }
        let references = try Self.reference(zip(names, activations).map { (try file.tensor($0), $1) }, rows: rows)
        for (name, x) in zip(names, activations) {
            let tensor = try file.tensor(name)
            let k = tensor.rowLength
            var exact = [Float](repeating: 0, count: rows * batch)
            var fast = [Float](repeating: 0, count: rows * batch)
            var scratch = [Float](repeating: 0, count: k)
            let bytes = Int(sl_activation_row_bytes(tensor.type.rawValue, Int64(k)))
            var quantized = [UInt8](repeating: 0, count: bytes * batch)
            try #require(bytes > 0, "\(name) (\(tensor.type)) has no integer kernel")
            x.withUnsafeBufferPointer { xp in
                sl_matmul_rows(tensor.type.rawValue, tensor.dataPointer, Int64(k), 0, Int64(rows), xp.baseAddress, Int64(batch), &exact, Int64(rows), &scratch)
                sl_quantize_activations(tensor.type.rawValue, xp.baseAddress, Int64(batch), Int64(k), &quantized)
            }
            sl_matmul_rows_quantized(tensor.type.rawValue, tensor.dataPointer, Int64(k), 0, Int64(rows), quantized, Int64(batch), &fast, Int64(rows))
            let reference = references[names.firstIndex(of: name)!]
            try #require(reference.count == rows * batch)
            let scale = reference.map { abs($0) }.max() ?? 1
            let floatError = zip(reference, exact).map { abs($0 - Double($1)) }.max() ?? 0
            let integerError = zip(reference, fast).map { abs($0 - Double($1)) }.max() ?? 0
            #expect(floatError / scale < 1e-4, "\(name) \(tensor.type): float kernel off by \(floatError) of \(scale)")
            #expect(integerError / scale < 0.02, "\(name) \(tensor.type): integer kernel off by \(integerError) of \(scale)")

            // Each activation row alone gives bit-identical results (batching is exact).
            for b in 0..<batch {
                var alone = [Float](repeating: 0, count: rows)
                quantized.withUnsafeBufferPointer { q in
                    _ = sl_matmul_rows_quantized(tensor.type.rawValue, tensor.dataPointer, Int64(k), 0, Int64(rows), q.baseAddress! + b * bytes, 1, &alone, Int64(rows))
                }
                #expect(alone == Array(fast[(b * rows)..<((b + 1) * rows)]), "\(name) \(tensor.type): row \(b) differs when batched")
            }
        }
    }

    /// For each (tensor, activations): the tensor's first `rows` rows (its bytes as the file
    /// stores them) times each activation row, by `quantized_dot_reference.py` (gguf's
    /// dequantization + numpy), in one run.
    static func reference(_ inputs: [(GGUFTensor, [Float])], rows: Int) throws -> [[Double]] {
        var arguments: [String] = []
        var files: [String] = []
        defer { for file in files { try? FileManager.default.removeItem(atPath: file) } }
        for (tensor, activations) in inputs {
            let weights = Repository.temporaryFile("\(tensor.name).bin")
            let inputs = Repository.temporaryFile("\(tensor.name).f32")
            files += [weights, inputs]
            let rowBytes = tensor.byteCount / tensor.rowCount
            try Data(bytes: tensor.dataPointer, count: rowBytes * rows).write(to: URL(fileURLWithPath: weights))
            try activations.withUnsafeBytes { Data($0) }.write(to: URL(fileURLWithPath: inputs))
            arguments += [tensor.type.description, String(tensor.rowLength), String(rows), weights, inputs]
        }
        let output = try Repository.runPython("quantized_dot_reference.py", arguments)
        return (try JSONSerialization.jsonObject(with: output) as? [[Double]]) ?? []
    }
}
