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

    /// A fork holding `other`'s positions with room for `extra` more, no larger than needed:
    /// each layer keeps at most `other`'s capacity (its ring, when the sliding window has
    /// wrapped) and otherwise just length + extra slots.
    private init(forking other: KVCache, extra: Int) {
        length = other.length
        maxContext = min(other.maxContext, other.length + extra)
        kvDim = other.kvDim
        let capacities = other.capacities.map { min($0, other.length + extra) }
        self.capacities = capacities
        let positions = other.length
        let dim = kvDim
        func copyLayer(_ source: UnsafeMutablePointer<Float>, _ sourceCapacity: Int, _ capacity: Int) -> UnsafeMutablePointer<Float> {
            let pointer = UnsafeMutablePointer<Float>.allocate(capacity: capacity * dim)
            if capacity == sourceCapacity {
                pointer.update(from: source, count: capacity * dim)
            } else {
                // Smaller than the source's ring, so the source has not wrapped: every
                // position 0..<length is there, at the same slot.
                pointer.update(from: source, count: positions * dim)
            }
            return pointer
        }
        keys = other.keys.indices.map { copyLayer(other.keys[$0], other.capacities[$0], capacities[$0]) }
        values = other.values.indices.map { copyLayer(other.values[$0], other.capacities[$0], capacities[$0]) }
    }

    /// An independent copy of this sequence's positions with room for `extra` more tokens
    /// (e.g. one per candidate answer scored after a shared prompt). Attention over the fork
    /// reads the same values in the same order, so its results are bit-identical.
    public func fork(reserving extra: Int) -> KVCache { KVCache(forking: self, extra: extra) }

    /// Bytes held by this cache.
    public var byteCount: Int { capacities.reduce(0, +) * kvDim * 2 * MemoryLayout<Float>.size }
}
