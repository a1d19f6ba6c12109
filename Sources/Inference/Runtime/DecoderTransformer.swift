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

    private func rope(_ pointer: UnsafeMutablePointer<Float>, heads: Int, position: Int, base: Float) {
        switch traits.rope {
        case .neox: sl_rope_neox(pointer, Int64(heads), Int64(config.headDim), Int64(position), base)
        case .normal: sl_rope_norm(pointer, Int64(heads), Int64(config.headDim), Int64(position), base)
        }
    }

    private func attentionBlock(_ layer: DecoderLayer, index: Int, buffers: ForwardBuffers, caches: [KVCache], positions: [Int]) {
        let n = positions.count
        let d = config.embeddingLength
        let headDim = config.headDim
        let qDim = config.headCount * headDim
        let kvDim = config.headCountKV * headDim
        let eps = config.rmsEpsilon
        let (x, h, q, k, v, attention) = (buffers.x, buffers.h, buffers.q, buffers.k, buffers.v, buffers.attention)
        for row in 0..<n { sl_rmsnorm(x + row * d, layer.attentionNorm, Int64(d), eps, h + row * d) }
        layer.query.apply(h, batch: n, dense: buffers.denseRows, into: q)
        layer.key.apply(h, batch: n, dense: buffers.denseRows, into: k)
        layer.value.apply(h, batch: n, dense: buffers.denseRows, into: v)
        addBias(layer.queryBias, to: q, rows: n)
        addBias(layer.keyBias, to: k, rows: n)
        addBias(layer.valueBias, to: v, rows: n)
        let local = config.isSlidingWindowLayer(index)
        let base = local ? config.ropeBaseLocal : config.ropeBase
        let queryScale = 1 / Float(headDim).squareRoot()
        for row in 0..<n {
            if let queryNorm = layer.queryNorm, let keyNorm = layer.keyNorm {
                for head in 0..<config.headCount {
                    let pointer = q + row * qDim + head * headDim
                    sl_rmsnorm(pointer, queryNorm, Int64(headDim), eps, pointer)
                }
                for head in 0..<config.headCountKV {
                    let pointer = k + row * kvDim + head * headDim
                    sl_rmsnorm(pointer, keyNorm, Int64(headDim), eps, pointer)
                }
            }
            rope(q + row * qDim, heads: config.headCount, position: positions[row], base: base)
            rope(k + row * kvDim, heads: config.headCountKV, position: positions[row], base: base)
            for i in 0..<qDim { q[row * qDim + i] *= queryScale }
            // Store this row's key and value before any row attends (rows of one sequence
            // are in position order, so later rows see earlier ones).
            let cache = caches[row]
            let slot = positions[row] % cache.capacities[index]
            (cache.keys[index] + slot * kvDim).update(from: k + row * kvDim, count: kvDim)
            (cache.values[index] + slot * kvDim).update(from: v + row * kvDim, count: kvDim)
        }
        let window = local ? config.slidingWindow : Int.max
        let addresses = (q: UInt(bitPattern: q), out: UInt(bitPattern: attention))
        let config = self.config
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
        for row in 0..<n {
            if let norm = layer.postAttentionNorm { sl_rmsnorm(h + row * d, norm, Int64(d), eps, h + row * d) }
            for i in 0..<d { x[row * d + i] += h[row * d + i] }
        }
    }

    private func feedForwardBlock(_ layer: DecoderLayer, buffers: ForwardBuffers) {
        let n = buffers.rows
        let d = config.embeddingLength
        let ff = config.feedForwardLength
        let eps = config.rmsEpsilon
        let (x, h, gate, up) = (buffers.x, buffers.h, buffers.gate, buffers.up)
        for row in 0..<n { sl_rmsnorm(x + row * d, layer.ffnNorm, Int64(d), eps, h + row * d) }
        layer.gate.apply(h, batch: n, dense: buffers.denseRows, into: gate)
        layer.up.apply(h, batch: n, dense: buffers.denseRows, into: up)
        // Element-wise, so split over the pool in slices (the bits do not depend on the split).
        let dense = buffers.denseRows * ff
        let addresses = (gate: UInt(bitPattern: gate), up: UInt(bitPattern: up))
        let activation = traits.activation
        ComputePool.parallelSlices(n * ff, slice: 1024) { start, count in
            let g = UnsafeMutablePointer<Float>(bitPattern: addresses.gate)! + start
            let u = UnsafePointer<Float>(bitPattern: addresses.up)! + start
            switch activation {
            case .geluTanh:
                // Dense (prefill) rows use the fast GELU, the others libm's tanh.
                let fast = max(0, min(count, dense - start))
                if fast > 0 { sl_gelu_mul_fast(g, u, Int64(fast)) }
                if count > fast { sl_gelu_mul(g + fast, u + fast, Int64(count - fast)) }
            case .silu: sl_silu_mul(g, u, Int64(count))
            }
        }
        layer.down.apply(gate, batch: n, dense: buffers.denseRows, into: h)
        for row in 0..<n {
            if let norm = layer.postFFNNorm { sl_rmsnorm(h + row * d, norm, Int64(d), eps, h + row * d) }
            for i in 0..<d { x[row * d + i] += h[row * d + i] }
        }
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
    }

    func deallocate() {
        for pointer in [x, h, q, k, v, attention, gate, up] { pointer.deallocate() }
    }
}
