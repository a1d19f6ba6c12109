import Foundation
import Inference
import Kernels
import Testing

/// The integer kernels (quantized activations) against float dot products of the
/// dequantized weights, on the real model's tensors of every quantized type it has.
@Suite("Quantized dot products")
struct QuantizedDotTests {
    @Test("integer dot products agree with float ones within the activation quantization error")
    func agreesWithFloat() throws {
        let file = try GGUFFile(path: Repository.model)
        let names = ["blk.0.attn_q.weight", "blk.0.attn_v.weight", "blk.0.attn_output.weight", "blk.0.ffn_down.weight", "token_embd.weight"]
        var random = SplitMix64(seed: 3)
        for name in names {
            let tensor = try file.tensor(name)
            let k = tensor.rowLength
            let rows = 64
            let batch = 14  // activation rows in a block of eight, one of four, and two single ones
            let x = (0..<(k * batch)).map { _ in Float(Double(random.next() % 2001) / 1000 - 1) }
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
            let scale = exact.map { abs($0) }.max() ?? 1
            let worst = zip(exact, fast).map { abs($0 - $1) }.max() ?? 0
            #expect(worst / scale < 0.02, "\(name) \(tensor.type): worst error \(worst) of \(scale)")

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
}
