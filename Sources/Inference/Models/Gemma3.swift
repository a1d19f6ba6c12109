import Foundation
import Kernels

/// Gemma 3 (`general.architecture = gemma3`).
///
/// Follows llama.cpp's gemma3 graph: embeddings scaled by √d; per layer an RMS pre-norm,
/// Q/K/V projections, per-head RMS norm of Q and K, NEOX RoPE (base 10,000 on sliding-window
/// layers, `rope.freq_base` on every sixth, global layer), Q scaled by 1/√head_dim, softmax
/// attention (local layers see the last `sliding_window` positions), output projection,
/// post-attention norm and residual; then RMS pre-norm, GELU(tanh)-gated FFN, post-FFN norm
/// and residual. Final RMS norm; the output matrix is tied to `token_embd`. GGUF norm weights
/// already include Gemma's `1 +` offset.
public final class Gemma3Model: LanguageModel, @unchecked Sendable {  // weights are immutable
    struct Layer {
        let attentionNorm: [Float]        // [d]
        let query: WeightMatrix           // [heads * headDim, d]
        let key: WeightMatrix             // [kvHeads * headDim, d]
        let value: WeightMatrix           // [kvHeads * headDim, d]
        let queryNorm: [Float]            // [headDim]
        let keyNorm: [Float]              // [headDim]
        let output: WeightMatrix          // [d, heads * headDim]
        let postAttentionNorm: [Float]    // [d]
        let ffnNorm: [Float]              // [d]
        let gate: WeightMatrix            // [ff, d]
        let up: WeightMatrix              // [ff, d]
        let down: WeightMatrix            // [d, ff]
        let postFFNNorm: [Float]          // [d]
    }

    public let config: ModelConfig
    public let tokenizer: any Tokenizer
    public let prefillChunk = 512
    let file: GGUFFile
    let embedding: WeightMatrix           // [vocab, d], also the output matrix
    let outputNorm: [Float]               // [d]
    let layers: [Layer]

    public init(file: GGUFFile) throws(InferenceError) {
        let config = try ModelConfig(file: file, architecture: "gemma3")
        let d = config.embeddingLength
        let qDim = config.headCount * config.headDim
        let kvDim = config.headCountKV * config.headDim
        self.file = file
        self.config = config
        self.tokenizer = try TokenizerLoader.load(from: file)
        embedding = try WeightMatrix(file.tensor("token_embd.weight"), columns: d)
        outputNorm = try loadVector(file.tensor("output_norm.weight"), length: d)
        var layers: [Layer] = []
        for index in 0..<config.blockCount {
            func tensor(_ name: String) throws(InferenceError) -> GGUFTensor { try file.tensor("blk.\(index).\(name).weight") }
            layers.append(Layer(
                attentionNorm: try loadVector(tensor("attn_norm"), length: d),
                query: try WeightMatrix(tensor("attn_q"), rows: qDim, columns: d),
                key: try WeightMatrix(tensor("attn_k"), rows: kvDim, columns: d),
                value: try WeightMatrix(tensor("attn_v"), rows: kvDim, columns: d),
                queryNorm: try loadVector(tensor("attn_q_norm"), length: config.headDim),
                keyNorm: try loadVector(tensor("attn_k_norm"), length: config.headDim),
                output: try WeightMatrix(tensor("attn_output"), rows: d, columns: qDim),
                postAttentionNorm: try loadVector(tensor("post_attention_norm"), length: d),
                ffnNorm: try loadVector(tensor("ffn_norm"), length: d),
                gate: try WeightMatrix(tensor("ffn_gate"), rows: config.feedForwardLength, columns: d),
                up: try WeightMatrix(tensor("ffn_up"), rows: config.feedForwardLength, columns: d),
                down: try WeightMatrix(tensor("ffn_down"), rows: d, columns: config.feedForwardLength),
                postFFNNorm: try loadVector(tensor("post_ffw_norm"), length: d)
            ))
        }
        self.layers = layers
        guard embedding.rows == tokenizer.vocabularySize else {
            throw InferenceError(.corrupt, "token_embd has \(embedding.rows) rows for \(tokenizer.vocabularySize) tokens")
        }
    }

    public func makeCache(maxContext: Int) -> KVCache {
        KVCache(config: config, maxContext: min(maxContext, config.contextLength), prefillChunk: prefillChunk)
    }

    public func forward(_ entries: [ForwardEntry]) throws(InferenceError) -> [[Float]] {
        // Flatten every entry's tokens into rows; remember each row's cache and position.
        var rowCache: [KVCache] = []
        var rowPosition: [Int] = []
        var rowToken: [Int32] = []
        var logitRows: [Int] = []
        for entry in entries {
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
            if entry.wantsLogits { logitRows.append(rowToken.count - 1) }
        }
        let n = rowToken.count
        let d = config.embeddingLength
        let buffers = ForwardBuffers(rows: n, config: config)
        defer { buffers.deallocate() }
        let x = buffers.x
        let scale = Float(d).squareRoot()
        for row in 0..<n {
            embedding.row(Int(rowToken[row]), into: x + row * d)
            for i in 0..<d { x[row * d + i] *= scale }
        }
        for (index, layer) in layers.enumerated() {
            attentionBlock(layer, index: index, buffers: buffers, caches: rowCache, positions: rowPosition)
            feedForwardBlock(layer, buffers: buffers)
        }
        for entry in entries { entry.cache.length += entry.tokens.count }
        return logits(rows: logitRows, buffers: buffers)
    }

    private func attentionBlock(_ layer: Layer, index: Int, buffers: ForwardBuffers, caches: [KVCache], positions: [Int]) {
        let n = positions.count
        let d = config.embeddingLength
        let headDim = config.headDim
        let qDim = config.headCount * headDim
        let kvDim = config.headCountKV * headDim
        let eps = config.rmsEpsilon
        let (x, h, q, k, v, attention) = (buffers.x, buffers.h, buffers.q, buffers.k, buffers.v, buffers.attention)
        for row in 0..<n { sl_rmsnorm(x + row * d, layer.attentionNorm, Int64(d), eps, h + row * d) }
        layer.query.apply(h, batch: n, into: q)
        layer.key.apply(h, batch: n, into: k)
        layer.value.apply(h, batch: n, into: v)
        let local = config.isSlidingWindowLayer(index)
        let base = local ? config.ropeBaseLocal : config.ropeBase
        let queryScale = 1 / Float(headDim).squareRoot()
        for row in 0..<n {
            for head in 0..<config.headCount {
                let pointer = q + row * qDim + head * headDim
                sl_rmsnorm(pointer, layer.queryNorm, Int64(headDim), eps, pointer)
            }
            for head in 0..<config.headCountKV {
                let pointer = k + row * kvDim + head * headDim
                sl_rmsnorm(pointer, layer.keyNorm, Int64(headDim), eps, pointer)
            }
            sl_rope_neox(q + row * qDim, Int64(config.headCount), Int64(headDim), Int64(positions[row]), base)
            sl_rope_neox(k + row * kvDim, Int64(config.headCountKV), Int64(headDim), Int64(positions[row]), base)
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
        DispatchQueue.concurrentPerform(iterations: n) { row in
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
        layer.output.apply(attention, batch: n, into: h)
        for row in 0..<n {
            sl_rmsnorm(h + row * d, layer.postAttentionNorm, Int64(d), eps, h + row * d)
            for i in 0..<d { x[row * d + i] += h[row * d + i] }
        }
    }

    private func feedForwardBlock(_ layer: Layer, buffers: ForwardBuffers) {
        let n = buffers.rows
        let d = config.embeddingLength
        let ff = config.feedForwardLength
        let eps = config.rmsEpsilon
        let (x, h, gate, up) = (buffers.x, buffers.h, buffers.gate, buffers.up)
        for row in 0..<n { sl_rmsnorm(x + row * d, layer.ffnNorm, Int64(d), eps, h + row * d) }
        layer.gate.apply(h, batch: n, into: gate)
        layer.up.apply(h, batch: n, into: up)
        sl_gelu_mul(gate, up, Int64(n * ff))
        layer.down.apply(gate, batch: n, into: h)
        for row in 0..<n {
            sl_rmsnorm(h + row * d, layer.postFFNNorm, Int64(d), eps, h + row * d)
            for i in 0..<d { x[row * d + i] += h[row * d + i] }
        }
    }

    private func logits(rows: [Int], buffers: ForwardBuffers) -> [[Float]] {
        guard !rows.isEmpty else { return [] }
        let d = config.embeddingLength
        let normed = UnsafeMutablePointer<Float>.allocate(capacity: rows.count * d)
        defer { normed.deallocate() }
        for (index, row) in rows.enumerated() {
            sl_rmsnorm(buffers.x + row * d, outputNorm, Int64(d), config.rmsEpsilon, normed + index * d)
        }
        let vocabulary = embedding.rows
        var all = [Float](repeating: 0, count: rows.count * vocabulary)
        all.withUnsafeMutableBufferPointer { embedding.apply(normed, batch: rows.count, into: $0.baseAddress!) }
        return (0..<rows.count).map { Array(all[($0 * vocabulary)..<(($0 + 1) * vocabulary)]) }
    }
}

/// Activations of one forward pass (`rows` tokens).
final class ForwardBuffers {
    let rows: Int
    let x: UnsafeMutablePointer<Float>          // [rows, d] residual stream
    let h: UnsafeMutablePointer<Float>          // [rows, d] normed / projected
    let q: UnsafeMutablePointer<Float>          // [rows, heads * headDim]
    let k: UnsafeMutablePointer<Float>          // [rows, kvHeads * headDim]
    let v: UnsafeMutablePointer<Float>          // [rows, kvHeads * headDim]
    let attention: UnsafeMutablePointer<Float>  // [rows, heads * headDim]
    let gate: UnsafeMutablePointer<Float>       // [rows, ff]
    let up: UnsafeMutablePointer<Float>         // [rows, ff]

    init(rows: Int, config: ModelConfig) {
        self.rows = rows
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
