/// Keys and values of prompt prefixes, computed once and copied into every later sequence
/// that starts with the same tokens (grounded prompts share their instructions and often
/// their passages).
///
/// The cache holds pages of `pageTokens` consecutive positions. A page is identified by its
/// tokens, the page before it (so a page stands for the whole prefix up to its end) and
/// whether it was computed with float (dense) or int8 products. Every position's key and
/// value depend only on the tokens up to it and on that choice — a row's products and
/// attention do not depend on the batch or the chunking — so a sequence that copies pages
/// computes exactly what it would have computed itself. Bounded by bytes; when full, the
/// least recently used page that no other page continues is evicted first, so a cached
/// page's whole prefix is always cached too.
///
/// Not thread-safe: owned by one ``BatchGenerator``, used on its thread.
public final class PrefixCache {
    /// Counters since the cache was made.
    public struct Statistics: Sendable, Equatable {
        /// Prompt positions copied from the cache instead of computed.
        public var hitTokens = 0
        /// Sequences that found at least one page.
        public var hits = 0
        /// Sequences that looked and found none.
        public var misses = 0
        public var pages = 0
        public var bytes = 0
        public var evictedPages = 0

        public init() {}
    }

    private struct Key: Hashable {
        let parent: UInt64
        let dense: Bool
        let tokens: ArraySlice<Int32>
    }

    private final class Page {
        let id: UInt64
        let key: Key
        let storage: UnsafeMutablePointer<Float>
        var children = 0
        var lastUse: UInt64

        init(id: UInt64, key: Key, floats: Int, lastUse: UInt64) {
            self.id = id
            self.key = key
            storage = .allocate(capacity: floats)
            self.lastUse = lastUse
        }

        deinit { storage.deallocate() }
    }

    /// A sequence's place in the cache: the last page of its cached prefix and the positions
    /// that prefix covers. Pages are added as the sequence's prompt is computed.
    public struct Chain: Sendable {
        var last: UInt64 = 0
        public internal(set) var positions = 0
        /// False once a page could not be stored (the cache is full of pages in use, or the
        /// sliding window no longer holds the positions): later pages would have no parent.
        var open = true

        public init() {}

        init(last: UInt64, positions: Int, open: Bool) {
            self.last = last
            self.positions = positions
            self.open = open
        }
    }

    public let pageTokens: Int
    public let capacityBytes: Int
    public private(set) var statistics = Statistics()
    private var pages: [Key: Page] = [:]
    private var byID: [UInt64: Page] = [:]
    private var nextID: UInt64 = 1
    private var clock: UInt64 = 0

    public init(capacityBytes: Int, pageTokens: Int = 16) {
        precondition(pageTokens > 0)
        self.capacityBytes = max(0, capacityBytes)
        self.pageTokens = pageTokens
    }

    private func floatsPerPage(_ cache: KVCache) -> Int { cache.keys.count * 2 * pageTokens * cache.kvDim }

    /// How many positions of `tokens` (whole pages, at most `limit`) the cache holds.
    public func cachedPositions(_ tokens: [Int32], dense: Bool, limit: Int) -> Int {
        cachedPages(tokens, dense: dense, limit: limit).count * pageTokens
    }

    private func cachedPages(_ tokens: [Int32], dense: Bool, limit: Int) -> [Page] {
        var found: [Page] = []
        var parent: UInt64 = 0
        var start = 0
        while start + pageTokens <= min(limit, tokens.count),
              let page = pages[Key(parent: parent, dense: dense, tokens: tokens[start..<(start + pageTokens)])] {
            found.append(page)
            parent = page.id
            start += pageTokens
        }
        return found
    }

    /// The longest cached prefix of `tokens` (whole pages, at most `limit` positions), copied
    /// into `cache`, which must be empty. Returns the chain to continue from.
    public func restore(_ tokens: [Int32], dense: Bool, limit: Int, into cache: KVCache) -> Chain {
        precondition(cache.length == 0, "a prefix is restored into an empty cache")
        let found = cachedPages(tokens, dense: dense, limit: limit)
        guard !found.isEmpty else {
            statistics.misses += 1
            return Chain()
        }
        // Deepest first, so that a prefix is never older than what continues it.
        for page in found.reversed() { touch(page) }
        let length = found.count * pageTokens
        for (index, page) in found.enumerated() { copy(page, into: cache, firstPosition: index * pageTokens, length: length) }
        cache.length = length
        statistics.hits += 1
        statistics.hitTokens += length
        return Chain(last: found.last!.id, positions: length, open: true)
    }

    /// Stores the complete pages of `tokens` that `cache` now holds and `chain` does not
    /// cover yet (positions below `min(cache.length, tokens.count)`).
    public func extend(_ chain: inout Chain, tokens: [Int32], dense: Bool, from cache: KVCache) {
        let end = min(cache.length, tokens.count)
        let oldestHeld = cache.length - (cache.capacities.min() ?? 0)
        while chain.open, chain.positions + pageTokens <= end {
            let key = Key(parent: chain.last, dense: dense, tokens: tokens[chain.positions..<(chain.positions + pageTokens)])
            if let page = pages[key] {
                touch(page)
                chain.last = page.id
                chain.positions += pageTokens
                continue
            }
            let floats = floatsPerPage(cache)
            let bytes = floats * MemoryLayout<Float>.size
            guard chain.positions >= oldestHeld, makeRoom(bytes, keeping: chain.last) else {
                chain.open = false
                return
            }
            clock += 1
            // The key keeps its own copy of the tokens, not the whole prompt.
            let page = Page(id: nextID, key: Key(parent: key.parent, dense: dense, tokens: ArraySlice(Array(key.tokens))),
                            floats: floats, lastUse: clock)
            nextID += 1
            fill(page, from: cache, firstPosition: chain.positions)
            pages[page.key] = page
            byID[page.id] = page
            byID[chain.last]?.children += 1
            statistics.pages += 1
            statistics.bytes += bytes
            chain.last = page.id
            chain.positions += pageTokens
        }
    }

    private func touch(_ page: Page) {
        clock += 1
        page.lastUse = clock
    }

    /// Evicts least recently used leaf pages (never `keeping`) until `bytes` more fit.
    private func makeRoom(_ bytes: Int, keeping: UInt64) -> Bool {
        guard bytes <= capacityBytes else { return false }
        while statistics.bytes + bytes > capacityBytes {
            guard let victim = byID.values.filter({ $0.children == 0 && $0.id != keeping }).min(by: { $0.lastUse < $1.lastUse }) else {
                return false
            }
            pages[victim.key] = nil
            byID[victim.id] = nil
            byID[victim.key.parent]?.children -= 1
            statistics.pages -= 1
            statistics.bytes -= bytes
            statistics.evictedPages += 1
        }
        return true
    }

    /// Page layout: for each layer, `pageTokens` keys then `pageTokens` values (kvDim floats each).
    private func fill(_ page: Page, from cache: KVCache, firstPosition: Int) {
        let run = pageTokens * cache.kvDim
        for layer in cache.keys.indices {
            let capacity = cache.capacities[layer]
            for position in firstPosition..<(firstPosition + pageTokens) {
                let offset = (position - firstPosition) * cache.kvDim
                let slot = (position % capacity) * cache.kvDim
                (page.storage + 2 * layer * run + offset).update(from: cache.keys[layer] + slot, count: cache.kvDim)
                (page.storage + (2 * layer + 1) * run + offset).update(from: cache.values[layer] + slot, count: cache.kvDim)
            }
        }
    }

    /// Copies a page's positions into their ring slots, skipping those a layer's ring would
    /// already have overwritten by `length`.
    private func copy(_ page: Page, into cache: KVCache, firstPosition: Int, length: Int) {
        let run = pageTokens * cache.kvDim
        for layer in cache.keys.indices {
            let capacity = cache.capacities[layer]
            let first = max(firstPosition, length - capacity)
            guard first < firstPosition + pageTokens else { continue }
            for position in first..<(firstPosition + pageTokens) {
                let offset = (position - firstPosition) * cache.kvDim
                let slot = (position % capacity) * cache.kvDim
                (cache.keys[layer] + slot).update(from: page.storage + 2 * layer * run + offset, count: cache.kvDim)
                (cache.values[layer] + slot).update(from: page.storage + (2 * layer + 1) * run + offset, count: cache.kvDim)
            }
        }
    }
}
