import Foundation
import Kernels

/// What distinguishes one decoder-only architecture's forward pass from another's.
struct ArchitectureTraits: Sendable {
    enum Activation: Sendable { case geluTanh, silu }
    enum RopeStyle: Sendable {
        /// Rotate pairs (i, i + d/2) — GPT-NeoX layout (Gemma, Qwen2).
        case neox
        /// Rotate adjacent pairs (2i, 2i + 1) — llama.cpp's "normal" layout (Llama).
        case normal
    }

    /// Multiply token embeddings by √d (Gemma).
    var scalesEmbeddings = false
    /// RMS-normalise each head of Q and K (Gemma 3).
    var normalisesQueryKey = false
    /// RMS norms after attention and after the FFN, before the residual adds (Gemma 2/3).
    var postNorms = false
    var activation: Activation = .silu
    var rope: RopeStyle = .normal
}

/// One transformer block's weights. Shapes use GGUF's row view: a matrix is `[rows, columns]`.
struct DecoderLayer: Sendable {
    let attentionNorm: [Float]        // [d]
    let query: WeightMatrix           // [heads * headDim, d]
    let key: WeightMatrix             // [kvHeads * headDim, d]
    let value: WeightMatrix           // [kvHeads * headDim, d]
    let queryBias: [Float]?           // [heads * headDim] (Qwen2)
    let keyBias: [Float]?             // [kvHeads * headDim]
    let valueBias: [Float]?           // [kvHeads * headDim]
    let queryNorm: [Float]?           // [headDim] (Gemma 3)
    let keyNorm: [Float]?             // [headDim]
    let output: WeightMatrix          // [d, heads * headDim]
    let postAttentionNorm: [Float]?   // [d] (Gemma)
    let ffnNorm: [Float]              // [d]
    let gate: WeightMatrix            // [ff, d]
    let up: WeightMatrix              // [ff, d]
    let down: WeightMatrix            // [d, ff]
    let postFFNNorm: [Float]?         // [d] (Gemma)

    /// Loads block `index` with llama.cpp's tensor names (`blk.N.attn_q.weight`, …).
    init(file: GGUFFile, index: Int, config: ModelConfig, traits: ArchitectureTraits) throws(InferenceError) {
        let d = config.embeddingLength
        let qDim = config.headCount * config.headDim
        let kvDim = config.headCountKV * config.headDim
        func tensor(_ name: String) throws(InferenceError) -> GGUFTensor { try file.tensor("blk.\(index).\(name)") }
        func optionalVector(_ name: String, _ length: Int) throws(InferenceError) -> [Float]? {
            guard let tensor = file.tensors["blk.\(index).\(name)"] else { return nil }
            return try loadVector(tensor, length: length)
        }
        attentionNorm = try loadVector(tensor("attn_norm.weight"), length: d)
        query = try WeightMatrix(tensor("attn_q.weight"), rows: qDim, columns: d)
        key = try WeightMatrix(tensor("attn_k.weight"), rows: kvDim, columns: d)
        value = try WeightMatrix(tensor("attn_v.weight"), rows: kvDim, columns: d)
        queryBias = try optionalVector("attn_q.bias", qDim)
        keyBias = try optionalVector("attn_k.bias", kvDim)
        valueBias = try optionalVector("attn_v.bias", kvDim)
        if traits.normalisesQueryKey {
            queryNorm = try loadVector(tensor("attn_q_norm.weight"), length: config.headDim)
            keyNorm = try loadVector(tensor("attn_k_norm.weight"), length: config.headDim)
        } else {
            queryNorm = nil
            keyNorm = nil
        }
        output = try WeightMatrix(tensor("attn_output.weight"), rows: d, columns: qDim)
        postAttentionNorm = traits.postNorms ? try loadVector(tensor("post_attention_norm.weight"), length: d) : nil
        ffnNorm = try loadVector(tensor("ffn_norm.weight"), length: d)
        gate = try WeightMatrix(tensor("ffn_gate.weight"), rows: config.feedForwardLength, columns: d)
        up = try WeightMatrix(tensor("ffn_up.weight"), rows: config.feedForwardLength, columns: d)
        down = try WeightMatrix(tensor("ffn_down.weight"), rows: d, columns: config.feedForwardLength)
        postFFNNorm = traits.postNorms ? try loadVector(tensor("post_ffw_norm.weight"), length: d) : nil
    }
}

/// The batched forward pass shared by the decoder-only architectures. Every row (a token
/// of some sequence) is computed independently of the others in the batch — matmuls are
/// per-row dot products in a fixed order and attention reads only the row's own sequence —
/// so batching never changes a result.
final class DecoderTransformer: @unchecked Sendable {  // immutable after init
    let config: ModelConfig
    let traits: ArchitectureTraits
    let tokenizer: any Tokenizer
    let file: GGUFFile
    let embedding: WeightMatrix       // [vocab, d]
    let outputNorm: [Float]           // [d]
    let outputMatrix: WeightMatrix    // [vocab, d] (token_embd when tied)
    let layers: [DecoderLayer]
    let prefillChunk = 512

    init(file: GGUFFile, architecture: String, traits: ArchitectureTraits) throws(InferenceError) {
        let config = try ModelConfig(file: file, architecture: architecture)
        let d = config.embeddingLength
        self.file = file
        self.config = config
        self.traits = traits
        self.tokenizer = try TokenizerLoader.load(from: file)
        let embedding = try WeightMatrix(
            file.tensor("token_embd.weight"), columns: d, products: file.tensors["output.weight"] == nil)
        self.embedding = embedding
        outputNorm = try loadVector(file.tensor("output_norm.weight"), length: d)
        if let output = file.tensors["output.weight"] {
            outputMatrix = try WeightMatrix(output, rows: embedding.rows, columns: d)
        } else {
            outputMatrix = embedding
        }
        var layers: [DecoderLayer] = []
        for index in 0..<config.blockCount {
            layers.append(try DecoderLayer(file: file, index: index, config: config, traits: traits))
        }
        self.layers = layers
        guard embedding.rows == tokenizer.vocabularySize else {
            throw InferenceError(.corrupt, "token_embd has \(embedding.rows) rows for \(tokenizer.vocabularySize) tokens")
        }
    }

    func makeCache(maxContext: Int) -> KVCache {
        KVCache(config: config, maxContext: min(maxContext, config.contextLength), prefillChunk: prefillChunk)
    }

    func forward(_ entries: [ForwardEntry]) throws(InferenceError) -> [[Float]] {
        // Flatten every entry's tokens into rows; remember each row's cache and position.
        var rowCache: [KVCache] = []
        var rowPosition: [Int] = []
        var rowToken: [Int32] = []
        var logitRows: [(row: Int, entry: Int)] = []
        // Dense entries' rows first: each matrix product takes them as one block.
        let order = entries.indices.filter { entries[$0].dense } + entries.indices.filter { !entries[$0].dense }
        let denseRows = entries.reduce(0) { $0 + ($1.dense ? $1.tokens.count : 0) }
        for index in order {
            let entry = entries[index]
            guard !entry.tokens.isEmpty, entry.tokens.count <= prefillChunk else {
                throw InferenceError(.invalidRequest, "a forward entry must hold 1...\(prefillChunk) tokens")
            }
            guard entry.cache.length + entry.tokens.count <= entry.cache.maxContext else {
                throw InferenceError(.invalidRequest, "the context of \(entry.cache.maxContext) tokens is full")
            }
            for (offset, token) in entry.tokens.enumerated() {
                guard token >= 0, Int(token) < embedding.rows else {
                    throw InferenceError(.invalidRequest, "token id \(token) is outside the vocabulary")
                }
                rowCache.append(entry.cache)
                rowPosition.append(entry.cache.length + offset)
                rowToken.append(token)
            }
            if let targets = entry.targets {
                guard targets.count == entry.tokens.count, targets.allSatisfy({ $0 >= 0 && Int($0) < embedding.rows }) else {
                    throw InferenceError(.invalidRequest, "a scoring entry needs one in-vocabulary target per token")
                }
            } else if entry.wantsLogits {
                logitRows.append((rowToken.count - 1, index))
            }
        }
        let n = rowToken.count
        let d = config.embeddingLength
        let buffers = ForwardBuffers(rows: n, denseRows: denseRows, config: config)
        defer { buffers.deallocate() }
        let x = buffers.x
        let scale: Float = traits.scalesEmbeddings ? Float(d).squareRoot() : 1
        for row in 0..<n {
            embedding.row(Int(rowToken[row]), into: x + row * d)
            if scale != 1 { for i in 0..<d { x[row * d + i] *= scale } }
        }
        let headDim = config.headDim
        let bases = (global: config.ropeBase, local: config.ropeBaseLocal)
        let tables = (global: UInt(bitPattern: buffers.ropeGlobal), local: UInt(bitPattern: buffers.ropeLocal))
        let positions = rowPosition
        ComputePool.parallelSlices(n, slice: 16) { start, count in
            for row in start..<(start + count) {
                let offset = row * headDim
                sl_rope_angles(Int64(headDim), Int64(positions[row]), bases.global, UnsafeMutablePointer(bitPattern: tables.global)! + offset)
                sl_rope_angles(Int64(headDim), Int64(positions[row]), bases.local, UnsafeMutablePointer(bitPattern: tables.local)! + offset)
            }
        }
        for (index, layer) in layers.enumerated() {
            attentionBlock(layer, index: index, buffers: buffers, caches: rowCache, positions: rowPosition)
            feedForwardBlock(layer, buffers: buffers)
        }
        for entry in entries { entry.cache.length += entry.tokens.count }
        // Logits (or scores) in the entries' order.
        var rowOfEntry: [Int: Int] = [:]
        var firstRow = 0
        for index in order {
            rowOfEntry[index] = firstRow
            firstRow += entries[index].tokens.count
        }
        let wanted = logitRows.sorted { $0.entry < $1.entry }
        var lastLogits = logits(rows: wanted.map(\.row), buffers: buffers).makeIterator()
        var results: [[Float]] = []
        for (index, entry) in entries.enumerated() {
            if let targets = entry.targets {
                results.append(scores(firstRow: rowOfEntry[index]!, targets: targets, buffers: buffers))
            } else if entry.wantsLogits, let row = lastLogits.next() {
                results.append(row)
            }
        }
        return results
    }

    /// log p(targets[i]) under the logits of rows firstRow + i, computed a few rows at a time
    /// so that a long candidate never holds its whole vocabulary × length of logits.
    /// Read in place: no row of logits is copied out.
    private func scores(firstRow: Int, targets: [Int32], buffers: ForwardBuffers) -> [Float] {
        var result: [Float] = []
        result.reserveCapacity(targets.count)
        let chunk = 8
        let vocabulary = outputMatrix.rows
        let d = config.embeddingLength
        let normed = UnsafeMutablePointer<Float>.allocate(capacity: chunk * d)
        let all = UnsafeMutablePointer<Float>.allocate(capacity: chunk * vocabulary)
        defer {
            normed.deallocate()
            all.deallocate()
        }
        var start = 0
        while start < targets.count {
            let rows = Array((firstRow + start)..<(firstRow + min(targets.count, start + chunk)))
            computeLogits(rows: rows, buffers: buffers, normed: normed, into: all)
            for offset in rows.indices {
                let row = all + offset * vocabulary
                result.append(row[Int(targets[start + offset])] - sl_logsumexp(row, Int64(vocabulary)))
            }
            start += chunk
        }
        return result
    }

    private func addBias(_ bias: [Float]?, to matrix: UnsafeMutablePointer<Float>, rows: Int) {
        guard let bias else { return }
        for row in 0..<rows { for i in 0..<bias.count { matrix[row * bias.count + i] += bias[i] } }
    }

    /// `body(row)` for rows 0..<n on the pool, a few rows per item (for row-wise work whose
    /// rows are independent, so the bits do not depend on the split).
    private func eachRow(_ n: Int, _ body: @Sendable (Int) -> Void) {
        ComputePool.parallelSlices(n, slice: 4) { start, count in
            for row in start..<(start + count) { body(row) }
        }
    }

    /// out[row] = rmsnorm(x[row]) · weights for rows 0..<n of width d.
    private func normRows(_ x: UnsafeMutablePointer<Float>, _ weights: [Float], n: Int, into out: UnsafeMutablePointer<Float>) {
        let (d, eps) = (config.embeddingLength, config.rmsEpsilon)
        let addresses = (x: UInt(bitPattern: x), out: UInt(bitPattern: out))
        eachRow(n) { row in
            sl_rmsnorm(UnsafePointer(bitPattern: addresses.x)! + row * d, weights, Int64(d), eps, UnsafeMutablePointer(bitPattern: addresses.out)! + row * d)
        }
    }

    /// x[row] += norm(h[row]) (or h[row] without a norm) for rows 0..<n: a block's output
    /// added to the residual stream.
    private func addResidual(_ h: UnsafeMutablePointer<Float>, norm: [Float]?, n: Int, to x: UnsafeMutablePointer<Float>) {
        let (d, eps) = (config.embeddingLength, config.rmsEpsilon)
        let addresses = (x: UInt(bitPattern: x), h: UInt(bitPattern: h))
        eachRow(n) { row in
            let h = UnsafeMutablePointer<Float>(bitPattern: addresses.h)! + row * d
            let x = UnsafeMutablePointer<Float>(bitPattern: addresses.x)! + row * d
            if let norm { sl_rmsnorm(h, norm, Int64(d), eps, h) }
            for i in 0..<d { x[i] += h[i] }
        }
    }

    private func attentionBlock(_ layer: DecoderLayer, index: Int, buffers: ForwardBuffers, caches: [KVCache], positions: [Int]) {
        let n = positions.count
        let headDim = config.headDim
        let qDim = config.headCount * headDim
        let kvDim = config.headCountKV * headDim
        let eps = config.rmsEpsilon
        let (x, h, q, k, v, attention) = (buffers.x, buffers.h, buffers.q, buffers.k, buffers.v, buffers.attention)
        normRows(x, layer.attentionNorm, n: n, into: h)
        layer.query.apply(h, batch: n, dense: buffers.denseRows, into: q)
        layer.key.apply(h, batch: n, dense: buffers.denseRows, into: k)
        layer.value.apply(h, batch: n, dense: buffers.denseRows, into: v)
        addBias(layer.queryBias, to: q, rows: n)
        addBias(layer.keyBias, to: k, rows: n)
        addBias(layer.valueBias, to: v, rows: n)
        let local = config.isSlidingWindowLayer(index)
        let queryScale = 1 / Float(headDim).squareRoot()
        // Row by row (each row's own cache slot) on the pool, a few rows per item.
        let rows = (q: UInt(bitPattern: q), k: UInt(bitPattern: k), v: UInt(bitPattern: v),
                    rope: UInt(bitPattern: local ? buffers.ropeLocal : buffers.ropeGlobal))
        let (config, neox) = (self.config, Int32(traits.rope == .neox ? 1 : 0))
        let norms = (query: layer.queryNorm, key: layer.keyNorm)
        eachRow(n) { row in
            let q = UnsafeMutablePointer<Float>(bitPattern: rows.q)! + row * qDim
            let k = UnsafeMutablePointer<Float>(bitPattern: rows.k)! + row * kvDim
            let v = UnsafeMutablePointer<Float>(bitPattern: rows.v)! + row * kvDim
            if let queryNorm = norms.query, let keyNorm = norms.key {
                for head in 0..<config.headCount {
                    sl_rmsnorm(q + head * headDim, queryNorm, Int64(headDim), eps, q + head * headDim)
                }
                for head in 0..<config.headCountKV {
                    sl_rmsnorm(k + head * headDim, keyNorm, Int64(headDim), eps, k + head * headDim)
                }
            }
            let angles = UnsafePointer<Float>(bitPattern: rows.rope)! + row * headDim
            sl_rope_apply(q, Int64(config.headCount), Int64(headDim), angles, neox)
            sl_rope_apply(k, Int64(config.headCountKV), Int64(headDim), angles, neox)
            for i in 0..<qDim { q[i] *= queryScale }
            // Store this row's key and value before any row attends (rows of one sequence
            // are in position order and at distinct slots, so later rows see earlier ones).
            let cache = caches[row]
            let slot = positions[row] % cache.capacities[index]
            (cache.keys[index] + slot * kvDim).update(from: k, count: kvDim)
            (cache.values[index] + slot * kvDim).update(from: v, count: kvDim)
        }
        let window = local ? config.slidingWindow : Int.max
        let addresses = (q: UInt(bitPattern: q), out: UInt(bitPattern: attention))
        ComputePool.parallelFor(n) { row in
            let cache = caches[row]
            let position = positions[row]
            let first = window == Int.max ? 0 : max(0, position - window + 1)
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: position - first + 1)
            defer { scores.deallocate() }
            sl_attention(
                UnsafePointer(bitPattern: addresses.q)! + row * qDim, cache.keys[index], cache.values[index],
                Int64(cache.capacities[index]), Int64(first), Int64(position), Int64(config.headCount),
                Int64(config.headCountKV), Int64(headDim), 1, UnsafeMutablePointer(bitPattern: addresses.out)! + row * qDim, scores)
        }
        layer.output.apply(attention, batch: n, dense: buffers.denseRows, into: h)
        addResidual(h, norm: layer.postAttentionNorm, n: n, to: x)
    }

    private func feedForwardBlock(_ layer: DecoderLayer, buffers: ForwardBuffers) {
        let n = buffers.rows
        let ff = config.feedForwardLength
        let (x, h, gate, up) = (buffers.x, buffers.h, buffers.gate, buffers.up)
        normRows(x, layer.ffnNorm, n: n, into: h)
        layer.gate.apply(h, batch: n, dense: buffers.denseRows, into: gate)
        layer.up.apply(h, batch: n, dense: buffers.denseRows, into: up)
        // Element-wise, so split over the pool in slices (the bits do not depend on the split).
        let addresses = (gate: UInt(bitPattern: gate), up: UInt(bitPattern: up))
        let activation = traits.activation
        ComputePool.parallelSlices(n * ff, slice: 1024) { start, count in
            let g = UnsafeMutablePointer<Float>(bitPattern: addresses.gate)! + start
            let u = UnsafePointer<Float>(bitPattern: addresses.up)! + start
            switch activation {
            // A vectorized tanh (relative error ~1e-6, well below llama.cpp's own: it rounds
            // GELU's input and output to f16); libm's tanhf cost ~10 % of a batch-16 step.
            case .geluTanh: sl_gelu_mul_fast(g, u, Int64(count))
            case .silu: sl_silu_mul(g, u, Int64(count))
            }
        }
        layer.down.apply(gate, batch: n, dense: buffers.denseRows, into: h)
        addResidual(h, norm: layer.postFFNNorm, n: n, to: x)
    }

    private func logits(rows: [Int], buffers: ForwardBuffers) -> [[Float]] {
        guard !rows.isEmpty else { return [] }
        let vocabulary = outputMatrix.rows
        let normed = UnsafeMutablePointer<Float>.allocate(capacity: rows.count * config.embeddingLength)
        let all = UnsafeMutablePointer<Float>.allocate(capacity: rows.count * vocabulary)
        defer {
            normed.deallocate()
            all.deallocate()
        }
        computeLogits(rows: rows, buffers: buffers, normed: normed, into: all)
        return (0..<rows.count).map { Array(UnsafeBufferPointer(start: all + $0 * vocabulary, count: vocabulary)) }
    }

    /// The logits of residual rows `rows` into `all` ([rows.count, vocabulary]); `normed` is
    /// room for the normed rows ([rows.count, d]).
    private func computeLogits(rows: [Int], buffers: ForwardBuffers, normed: UnsafeMutablePointer<Float>, into all: UnsafeMutablePointer<Float>) {
        let d = config.embeddingLength
        for (index, row) in rows.enumerated() {
            sl_rmsnorm(buffers.x + row * d, outputNorm, Int64(d), config.rmsEpsilon, normed + index * d)
        }
        outputMatrix.apply(normed, batch: rows.count, into: all)
    }
}

/// Activations of one forward pass (`rows` tokens).
final class ForwardBuffers {
    let rows: Int
    /// The first `denseRows` rows use float matrix products (see ``ForwardEntry/dense``).
    let denseRows: Int
    let x: UnsafeMutablePointer<Float>          // [rows, d] residual stream
    let h: UnsafeMutablePointer<Float>          // [rows, max(d, heads * headDim)] normed / projected
    let q: UnsafeMutablePointer<Float>          // [rows, heads * headDim]
    let k: UnsafeMutablePointer<Float>          // [rows, kvHeads * headDim]
    let v: UnsafeMutablePointer<Float>          // [rows, kvHeads * headDim]
    let attention: UnsafeMutablePointer<Float>  // [rows, heads * headDim]
    let gate: UnsafeMutablePointer<Float>       // [rows, ff]
    let up: UnsafeMutablePointer<Float>         // [rows, ff]
    /// Each row's rotations (`sl_rope_angles`) for the global and the sliding-window layers'
    /// bases: computed once per forward pass, used by every layer.
    let ropeGlobal: UnsafeMutablePointer<Float> // [rows, headDim]
    let ropeLocal: UnsafeMutablePointer<Float>  // [rows, headDim]

    init(rows: Int, denseRows: Int, config: ModelConfig) {
        self.rows = rows
        self.denseRows = denseRows
        let d = config.embeddingLength
        let qDim = config.headCount * config.headDim
        let kvDim = config.headCountKV * config.headDim
        x = .allocate(capacity: rows * d)
        h = .allocate(capacity: rows * max(d, qDim))
        q = .allocate(capacity: rows * qDim)
        k = .allocate(capacity: rows * kvDim)
        v = .allocate(capacity: rows * kvDim)
        attention = .allocate(capacity: rows * qDim)
        gate = .allocate(capacity: rows * config.feedForwardLength)
        up = .allocate(capacity: rows * config.feedForwardLength)
        ropeGlobal = .allocate(capacity: rows * config.headDim)
        ropeLocal = .allocate(capacity: rows * config.headDim)
    }

    func deallocate() {
        for pointer in [x, h, q, k, v, attention, gate, up, ropeGlobal, ropeLocal] { pointer.deallocate() }
    }
}
