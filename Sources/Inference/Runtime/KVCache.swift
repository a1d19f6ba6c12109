/// One sequence's key/value cache: per layer, ring buffers of `[capacity, kvDim]` floats.
/// Sliding-window layers keep only `window + chunk` positions; global layers keep the whole
/// context. Positions map to slot `position % capacity`.
public final class KVCache: @unchecked Sendable {  // owned by one generator thread at a time
    /// Positions written so far (the next token's position).
    public internal(set) var length = 0
    let maxContext: Int
    let kvDim: Int
    let capacities: [Int]
    let keys: [UnsafeMutablePointer<Float>]
    let values: [UnsafeMutablePointer<Float>]

    init(config: ModelConfig, maxContext: Int, prefillChunk: Int) {
        self.maxContext = maxContext
        kvDim = config.headCountKV * config.headDim
        capacities = (0..<config.blockCount).map { layer in
            config.isSlidingWindowLayer(layer) ? min(maxContext, config.slidingWindow + prefillChunk) : maxContext
        }
        keys = capacities.map { UnsafeMutablePointer<Float>.allocate(capacity: $0 * config.headCountKV * config.headDim) }
        values = capacities.map { UnsafeMutablePointer<Float>.allocate(capacity: $0 * config.headCountKV * config.headDim) }
    }

    deinit {
        for pointer in keys + values { pointer.deallocate() }
    }

    /// Bytes held by this cache.
    public var byteCount: Int { capacities.reduce(0, +) * kvDim * 2 * MemoryLayout<Float>.size }
}
