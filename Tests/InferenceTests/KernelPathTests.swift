import COpenBLAS
import Foundation
import Inference
import Kernels
import Testing

/// Every kernel path this CPU supports gives the portable path's bits, on random blocks and
/// on the real model, so that a request replayed on any node of a mixed fleet (AVX2 only,
/// AVX-512, AVX-512 VNNI) gets the same answer.
///
/// The tests cap the process-wide path (`sl_isa_set_limit`) while they run. Tests of other
/// suites running meanwhile then compute on another path, which by what is tested here gives
/// the same bits; the suite is serialized so that its own tests do not move the cap under
/// each other.
@Suite("Kernel paths: every instruction set gives the portable path's bits", .serialized)
struct KernelPathTests {
    /// The paths to compare: the portable one and every one above it this CPU supports.
    static var paths: [Int32] { Array(0...sl_isa_supported()) }

    /// `body`'s result on each path, with the path's name; the cap is restored afterwards.
    static func onEveryPath<T>(_ body: () throws -> T) rethrows -> [(name: String, value: T)] {
        defer { sl_isa_set_limit(sl_isa_supported()) }
        return try paths.map { isa in
            sl_isa_set_limit(isa)
            return (String(cString: sl_isa_name(isa)), try body())
        }
    }

    /// Requires every path's floats to have the portable path's bit patterns.
    static func expectSameBits(_ results: [(name: String, value: [Float])], _ what: String) {
        let portable = results[0].value.map(\.bitPattern)
        for (name, value) in results.dropFirst() {
            let differing = zip(portable, value.map(\.bitPattern)).filter { $0 != $1 }.count
            #expect(value.count == portable.count && differing == 0, "\(what): \(name) differs from portable in \(differing) of \(portable.count) values")
        }
    }

    /// Random floats in [-scale, scale).
    static func randomFloats(_ count: Int, scale: Float = 1, _ random: inout SplitMix64) -> [Float] {
        (0..<count).map { _ in Float(random.nextUnit() * 2 - 1) * scale }
    }

    /// Random blocks of `type` with finite block scales (normal and subnormal halves).
    static func randomRows(_ type: TensorType, rows: Int, k: Int, _ random: inout SplitMix64) -> [UInt8] {
        let blocks = rows * k / type.blockElements
        var bytes = (0..<(blocks * type.blockBytes)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
        // Offsets of the f16 scales within a block.
        let scaleOffsets: [Int] = switch type {
        case .q4_K, .q5_K: [0, 2]
        case .q6_K: [208]
        default: [0]
        }
        for block in 0..<blocks {
            for offset in scaleOffsets {
                // Sign, an exponent of 0 (subnormal) to 16, any mantissa: |value| < 4.
                let exponent = UInt16(random.next() % 17)
                let half = UInt16(random.next() % 2) << 15 | exponent << 10 | UInt16(random.next() % 1024)
                bytes[block * type.blockBytes + offset] = UInt8(half & 0xFF)
                bytes[block * type.blockBytes + offset + 1] = UInt8(half >> 8)
            }
        }
        return bytes
    }

    static let quantizedTypes: [TensorType] = [.q4_0, .q5_0, .q8_0, .q4_K, .q5_K, .q6_K]

    /// Integer products (every batch width the tile kernels have, and leftovers) and dense
    /// float products (partial panels and partial row groups) of weight rows.
    static func products(type: TensorType, weights: UnsafeRawPointer, rows: Int, k: Int, x: [Float], batch: Int) -> (int8: [Float], dense: [Float]) {
        var int8 = [Float](repeating: .nan, count: rows * batch)
        var dense = [Float](repeating: .nan, count: rows * batch)
        let bytes = Int(sl_activation_row_bytes(type.rawValue, Int64(k)))
        var quantized = [UInt8](repeating: 0, count: bytes * batch)
        sl_quantize_activations(type.rawValue, x, Int64(batch), Int64(k), &quantized)
        // Two calls over row ranges, as the runtime's threads split a matrix.
        let split = rows / 2 | 1
        for (begin, end) in [(0, split), (split, rows)] {
            sl_matmul_rows_quantized(type.rawValue, weights, Int64(k), Int64(begin), Int64(end), quantized, Int64(batch), &int8, Int64(rows))
            sl_matmul_rows_dense(type.rawValue, weights, Int64(k), Int64(begin), Int64(end), x, Int64(batch), &dense, Int64(rows))
        }
        return (int8, dense)
    }

    @Test("integer and dense products of random blocks of every quantized type", arguments: quantizedTypes)
    func randomBlocks(type: TensorType) {
        var random = SplitMix64(seed: UInt64(type.rawValue) + 11)
        let k = 512
        let rows = 71  // odd: pairs of weight rows and a single one; pairs of full 16-row panels, two partial ones
        let weights = Self.randomRows(type, rows: rows, k: k, &random)
        for batch in [1, 3, 4, 8, 13, 29] {
            let x = Self.randomFloats(batch * k, scale: 3, &random)
            let results = weights.withUnsafeBytes { w in
                Self.onEveryPath { Self.products(type: type, weights: w.baseAddress!, rows: rows, k: k, x: x, batch: batch) }
            }
            Self.expectSameBits(results.map { ($0.name, $0.value.int8) }, "\(type) int8, batch \(batch)")
            Self.expectSameBits(results.map { ($0.name, $0.value.dense) }, "\(type) dense, batch \(batch)")
            #expect(!results[0].value.int8.contains { !$0.isFinite } && !results[0].value.dense.contains { !$0.isFinite })
        }
    }

    /// Packed Q8_0 or Q5_0 products (`sl_matmul_packed`) of `rows` rows, in two calls split
    /// at a group boundary, as the runtime's threads split a matrix.
    static func packedProducts(type: TensorType, weights: UnsafeRawPointer, rows: Int, k: Int, quantized: [UInt8], batch: Int) -> [Float] {
        var packed = [UInt8](repeating: 0xA5, count: Int(sl_packed_bytes(type.rawValue, Int64(rows), Int64(k))))
        #expect(sl_pack(type.rawValue, weights, Int64(rows), Int64(k), 0, Int64((rows + 15) / 16), &packed) == 0)
        var y = [Float](repeating: .nan, count: rows * batch)
        let blocks = batch * k / 32
        var scales = [Float](repeating: .nan, count: blocks), offsets = [Int32](repeating: 0, count: blocks)
        #expect(sl_packed_activation_terms(type.rawValue, quantized, Int64(blocks), &scales, &offsets) == 0)
        let split = min(rows, 32)
        for (begin, end) in [(0, split), (split, rows)] {
            #expect(sl_matmul_packed(type.rawValue, packed, Int64(k), Int64(rows), Int64(begin), Int64(end), quantized, scales, offsets, Int64(batch), &y, Int64(rows)) == 0)
        }
        return y
    }

    /// Activation rows quantized for Q8_0 weights.
    static func quantizedQ8(_ x: [Float], batch: Int, k: Int) -> [UInt8] {
        var quantized = [UInt8](repeating: 0, count: Int(sl_activation_row_bytes(TensorType.q8_0.rawValue, Int64(k))) * batch)
        sl_quantize_activations(TensorType.q8_0.rawValue, x, Int64(batch), Int64(k), &quantized)
        return quantized
    }

    /// The 32 signed values of block `block` of a Q8_0 or Q5_0 row in the file's encoding.
    static func blockValues(_ type: TensorType, _ bytes: [UInt8], block: Int) -> [Int32] {
        let base = block * type.blockBytes
        if type == .q8_0 { return (0..<32).map { Int32(Int8(bitPattern: bytes[base + 2 + $0])) } }
        let high = (0..<4).reduce(UInt32(0)) { $0 | UInt32(bytes[base + 2 + $1]) << (8 * $1) }
        return (0..<32).map { e in
            let nibble = e < 16 ? bytes[base + 6 + e] & 0x0F : bytes[base + 6 + e - 16] >> 4
            return Int32(nibble) | Int32((high >> e) & 1) << 4 - 16
        }
    }

    @Test("packed Q8_0 and Q5_0 products: the same bits on every path and batch width, the documented order, close to the row kernel",
          arguments: [TensorType.q8_0, .q5_0])
    func packedProducts(type: TensorType) {
        var random = SplitMix64(seed: 41 + UInt64(type.rawValue))
        let k = 512, rows = 71  // four full groups of sixteen and a partial one
        let blockBytes = type.blockBytes, blocks = k / 32
        let weights = Self.randomRows(type, rows: rows, k: k, &random)
        // The packed form keeps Q5_0's size.
        if type == .q5_0 { #expect(sl_packed_group_bytes(type.rawValue, Int64(k)) == Int64(16 * blocks * blockBytes)) }
        // Unpacking gives the mapped rows' values.
        weights.withUnsafeBytes { w in
            var packed = [UInt8](repeating: 0, count: Int(sl_packed_bytes(type.rawValue, Int64(rows), Int64(k))))
            sl_pack(type.rawValue, w.baseAddress, Int64(rows), Int64(k), 0, Int64((rows + 15) / 16), &packed)
            for row in [0, 15, 16, 70] {
                var unpacked = [Float](repeating: 0, count: k), reference = [Float](repeating: 0, count: k)
                sl_packed_row(type.rawValue, packed, Int64(k), Int64(row), &unpacked)
                sl_dequantize_row(type.rawValue, w.baseAddress! + row * blocks * blockBytes, &reference, Int64(k))
                #expect(unpacked.map(\.bitPattern) == reference.map(\.bitPattern), "row \(row)")
            }
        }
        for batch in [1, 3, 4, 8, 13, 29] {
            let x = Self.randomFloats(batch * k, scale: 3, &random)
            let quantized = Self.quantizedQ8(x, batch: batch, k: k)
            let results = weights.withUnsafeBytes { w in
                Self.onEveryPath { Self.packedProducts(type: type, weights: w.baseAddress!, rows: rows, k: k, quantized: quantized, batch: batch) }
            }
            Self.expectSameBits(results, "\(type) packed, batch \(batch)")
            let portable = results[0].value
            // The documented order: per block, the exact integer sum times d_w · d_x, added by
            // fused multiply-add from +0.
            func scale(_ bytes: [UInt8], _ offset: Int) -> Float { sl_f16_to_f32(UInt16(bytes[offset]) | UInt16(bytes[offset + 1]) << 8) }
            for b in 0..<batch {
                for r in [0, 17, rows - 1] {
                    var acc: Float = 0
                    for i in 0..<blocks {
                        let wb = (r * blocks + i) * blockBytes, xb = (b * blocks + i) * TensorType.q8_0.blockBytes
                        let values = Self.blockValues(type, weights, block: r * blocks + i)
                        let sum = (0..<32).reduce(Int32(0)) { $0 + values[$1] * Int32(Int8(bitPattern: quantized[xb + 2 + $1])) }
                        acc = acc.addingProduct(Float(sum), scale(weights, wb) * scale(quantized, xb))
                    }
                    #expect(portable[b * rows + r].bitPattern == acc.bitPattern, "\(type) batch \(batch), row \(r), batch row \(b)")
                }
            }
            // The row kernel sums in another order: close, not equal.
            var rowKernel = [Float](repeating: 0, count: rows * batch)
            weights.withUnsafeBytes { w in
                _ = sl_matmul_rows_quantized(type.rawValue, w.baseAddress, Int64(k), 0, Int64(rows), quantized, Int64(batch), &rowKernel, Int64(rows))
            }
            let magnitude = rowKernel.map { abs($0) }.max() ?? 0
            let worst = zip(portable, rowKernel).map { abs($0 - $1) }.max() ?? .infinity
            #expect(magnitude > 0 && worst / magnitude < 1e-5, "\(type) batch \(batch): packed vs row kernel \(worst) of \(magnitude)")
            // Dense products of the packed copy are those of the file's rows, bit for bit.
            var packedDense = [Float](repeating: .nan, count: rows * batch), mappedDense = packedDense
            weights.withUnsafeBytes { w in
                var packed = [UInt8](repeating: 0, count: Int(sl_packed_bytes(type.rawValue, Int64(rows), Int64(k))))
                sl_pack(type.rawValue, w.baseAddress, Int64(rows), Int64(k), 0, Int64((rows + 15) / 16), &packed)
                for (begin, end) in [(0, 32), (32, rows)] {
                    #expect(sl_matmul_packed_dense(type.rawValue, packed, Int64(k), Int64(begin), Int64(end), x, Int64(batch), &packedDense, Int64(rows)) == 0)
                    #expect(sl_matmul_rows_dense(type.rawValue, w.baseAddress, Int64(k), Int64(begin), Int64(end), x, Int64(batch), &mappedDense, Int64(rows)) == 0)
                }
            }
            #expect(packedDense.map(\.bitPattern) == mappedDense.map(\.bitPattern) && !packedDense.contains { $0.isNaN }, "\(type) dense, batch \(batch)")
            // A batch row's outputs do not depend on the rest of the batch.
            let first = Self.quantizedQ8(Array(x[0..<k]), batch: 1, k: k)
            let solo = weights.withUnsafeBytes { Self.packedProducts(type: type, weights: $0.baseAddress!, rows: rows, k: k, quantized: first, batch: 1) }
            #expect(portable[0..<rows].map(\.bitPattern) == solo.map(\.bitPattern), "\(type) batch \(batch): row 0 differs from the same row alone")
        }
    }

    @Test("integer and dense products of the real model's first two layers and its output matrix")
    func realModelLayers() throws {
        let file = try GGUFFile(path: Repository.model)
        let names = file.tensorNames.filter { $0.hasPrefix("blk.0.") || $0.hasPrefix("blk.1.") }.filter { file.tensors[$0]!.dimensions.count == 2 }
            + ["token_embd.weight"]
        var random = SplitMix64(seed: 5)
        var types: Set<TensorType> = []
        for name in names {
            let tensor = try file.tensor(name)
            types.insert(tensor.type)
            let k = tensor.rowLength
            let rows = min(tensor.rowCount, 96)
            let batch = 9
            let x = Self.randomFloats(batch * k, scale: 2, &random)
            let results = Self.onEveryPath { Self.products(type: tensor.type, weights: tensor.dataPointer, rows: rows, k: k, x: x, batch: batch) }
            Self.expectSameBits(results.map { ($0.name, $0.value.int8) }, "\(name) int8")
            Self.expectSameBits(results.map { ($0.name, $0.value.dense) }, "\(name) dense")
            if tensor.type == .q8_0 || tensor.type == .q5_0 {  // the runtime's product for these matrices
                let quantized = Self.quantizedQ8(x, batch: batch, k: k)
                let packed = Self.onEveryPath { Self.packedProducts(type: tensor.type, weights: tensor.dataPointer, rows: rows, k: k, quantized: quantized, batch: batch) }
                Self.expectSameBits(packed, "\(name) packed")
            }
        }
        // The default model's matrices are Q8_0, Q5_0, Q4_K and Q6_K (all covered above).
        #expect(types.isSuperset(of: [.q8_0, .q5_0, .q4_K, .q6_K]), "\(types)")
    }

    @Test("float dot products, norms, GELU and attention of random vectors")
    func floatOperations() {
        var random = SplitMix64(seed: 17)
        for n in [1, 7, 31, 32, 33, 256, 640, 1000, 2048] {
            let a = Self.randomFloats(n, scale: 4, &random), b = Self.randomFloats(n, &random)
            Self.expectSameBits(Self.onEveryPath { [sl_dot_f32(a, b, Int64(n))] }, "dot \(n)")
            let w = Self.randomFloats(n, &random)
            Self.expectSameBits(Self.onEveryPath {
                var out = [Float](repeating: 0, count: n)
                sl_rmsnorm(a, w, Int64(n), 1e-6, &out)
                return out
            }, "rmsnorm \(n)")
        }
        // GELU over a wide range (the clamp of its tanh included) and odd lengths (the tail).
        for n in [5, 8, 1003] {
            let g = Self.randomFloats(n, scale: 12, &random), u = Self.randomFloats(n, &random)
            Self.expectSameBits(Self.onEveryPath {
                var out = g
                sl_gelu_mul_fast(&out, u, Int64(n))
                return out
            }, "gelu \(n)")
        }
        // Attention of 4 query heads over 1 KV head of 256 (the default model's shape),
        // across a wrapped ring buffer.
        let heads = 4, headDim = 256, capacity = 48
        let q = Self.randomFloats(heads * headDim, &random)
        let keys = Self.randomFloats(capacity * headDim, &random), values = Self.randomFloats(capacity * headDim, &random)
        Self.expectSameBits(Self.onEveryPath {
            var out = [Float](repeating: 0, count: heads * headDim)
            var scores = [Float](repeating: 0, count: 40)
            sl_attention(q, keys, values, Int64(capacity), 20, 59, Int64(heads), 1, Int64(headDim), 0.0625, &out, &scores)
            return out
        }, "attention")
    }

    @Test("the portable paths compute the documented order: dot products and dense outputs")
    func documentedOrder() {
        sl_isa_set_limit(0)
        defer { sl_isa_set_limit(sl_isa_supported()) }
        var random = SplitMix64(seed: 23)
        // sl_dot_f32: partials i mod 32 by fused multiply-add, reduced pairwise, tail last.
        for n in [40, 640] {
            let a = Self.randomFloats(n, scale: 4, &random), b = Self.randomFloats(n, &random)
            var partial = [Float](repeating: 0, count: 32)
            let full = n - n % 32
            for i in 0..<full { partial[i % 32] = partial[i % 32].addingProduct(a[i], b[i]) }
            var tail: Float = 0
            for i in full..<n { tail = tail.addingProduct(a[i], b[i]) }
            var width = 16
            while width >= 1 {
                for l in 0..<width { partial[l] += partial[l + width] }
                width /= 2
            }
            // The eight-lane order is (l + l+4), then (+2), then (+1): the halving above.
            #expect(sl_dot_f32(a, b, Int64(n)).bitPattern == (partial[0] + tail).bitPattern, "dot \(n)")
        }
        // sl_matmul_rows_dense: one fused multiply-add chain in k order from +0.
        let k = 300, rows = 5, batch = 2
        let w = Self.randomFloats(rows * k, &random), x = Self.randomFloats(batch * k, &random)
        var y = [Float](repeating: 0, count: rows * batch)
        let status = w.withUnsafeBytes { sl_matmul_rows_dense(TensorType.f32.rawValue, $0.baseAddress, Int64(k), 0, Int64(rows), x, Int64(batch), &y, Int64(rows)) }
        #expect(status == 0)
        for b in 0..<batch {
            for r in 0..<rows {
                let chain = (0..<k).reduce(Float(0)) { $0.addingProduct(x[b * k + $1], w[r * k + $1]) }
                #expect(y[b * rows + r].bitPattern == chain.bitPattern, "row \(r), batch row \(b)")
            }
        }
    }

    @Test("rotations from a precomputed table give sl_rope_neox's and sl_rope_norm's bits")
    func ropeTable() {
        var random = SplitMix64(seed: 31)
        for (headDim, position, base) in [(256, 0, Float(10_000)), (256, 4_095, 1_000_000), (64, 77, 10_000)] {
            let x = Self.randomFloats(4 * headDim, scale: 3, &random)
            var angles = [Float](repeating: .nan, count: headDim)
            sl_rope_angles(Int64(headDim), Int64(position), base, &angles)
            for neox: Int32 in [0, 1] {
                var direct = x, tabled = x
                if neox == 1 { sl_rope_neox(&direct, 4, Int64(headDim), Int64(position), base) } else { sl_rope_norm(&direct, 4, Int64(headDim), Int64(position), base) }
                sl_rope_apply(&tabled, 4, Int64(headDim), angles, neox)
                #expect(direct.map(\.bitPattern) == tabled.map(\.bitPattern), "head_dim \(headDim), position \(position), neox \(neox)")
                #expect(position == 0 ? tabled == x : tabled != x)
            }
        }
    }

    @Test("the dense kernel agrees with OpenBLAS sgemm on the real model's matrices")
    func denseAgreesWithOpenBLAS() throws {
        let file = try GGUFFile(path: Repository.model)
        var random = SplitMix64(seed: 29)
        for name in ["blk.0.attn_q.weight", "blk.0.ffn_down.weight", "blk.0.attn_v.weight"] {
            let tensor = try file.tensor(name)
            let k = tensor.rowLength, rows = 200, batch = 70
            let x = Self.randomFloats(batch * k, &random)
            var ours = [Float](repeating: 0, count: rows * batch)
            sl_matmul_rows_dense(tensor.type.rawValue, tensor.dataPointer, Int64(k), 0, Int64(rows), x, Int64(batch), &ours, Int64(rows))
            var weights = [Float](repeating: 0, count: rows * k)
            sl_dequantize_row(tensor.type.rawValue, tensor.dataPointer, &weights, Int64(rows * k))
            var reference = [Float](repeating: 0, count: rows * batch)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, blasint(batch), blasint(rows), blasint(k),
                        1, x, blasint(k), weights, blasint(k), 0, &reference, blasint(rows))
            let scale = reference.map { abs($0) }.max() ?? 1
            let worst = zip(ours, reference).map { abs($0 - $1) }.max() ?? .infinity
            #expect(scale > 0 && worst / scale < 1e-5, "\(name): worst difference \(worst) of \(scale)")
        }
    }

    @Test("a forward pass of the real model (dense prefill, int8 prefill, decoding) gives the same logits on every path")
    func realModelForward() throws {
        let model = try RealModel.load()
        let prompt = model.tokenizer.encode("Customer question: 我的卡丢了，怎么办？\nBank service answer:", addBOS: true, parseSpecial: false)
        let results = try Self.onEveryPath {
            // The prompt prefilled in float (as long prompts are) and in int8, two decode steps each.
            try [true, false].flatMap { dense in
                let cache = model.makeCache(maxContext: 64)
                var logits = try model.forward([ForwardEntry(cache: cache, tokens: prompt, wantsLogits: true, dense: dense)])[0]
                var all = logits
                for _ in 0..<2 {
                    let next = Int32(logits.indices.max { logits[$0] < logits[$1] }!)
                    logits = try model.forward([ForwardEntry(cache: cache, tokens: [next], wantsLogits: true)])[0]
                    all += logits
                }
                return all
            }
        }
        Self.expectSameBits(results, "logits")
    }
}

extension SplitMix64 {
    /// A uniform value in [0, 1).
    mutating func nextUnit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}
