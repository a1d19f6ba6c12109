import Kernels

/// A weight matrix used in its GGUF encoding: `rows` rows of `columns` elements
/// (GGUF dimensions `[columns, rows]`).
struct WeightMatrix: @unchecked Sendable {  // reads immutable mapped memory only
    let tensor: GGUFTensor
    /// Q8_0 and Q5_0 weights repacked for `sl_matmul_packed` (sixteen rows per vector), used
    /// for every product and `row` (the mapped pages are released once packed).
    let packed: PackedWeights?

    var rows: Int { tensor.rowCount }
    var columns: Int { tensor.rowLength }

    /// `products: false` for a matrix only looked up by row (an untied embedding): not packed.
    init(_ tensor: GGUFTensor, rows: Int? = nil, columns: Int? = nil, products: Bool = true) throws(InferenceError) {
        if let rows, tensor.rowCount != rows {
            throw InferenceError(.missingTensor, "\(tensor.name) has \(tensor.rowCount) rows, expected \(rows)")
        }
        if let columns, tensor.rowLength != columns {
            throw InferenceError(.missingTensor, "\(tensor.name) has rows of \(tensor.rowLength), expected \(columns)")
        }
        self.tensor = tensor
        self.packed = products ? PackedWeights(tensor) : nil
    }

    /// `y[b * rows + r] = W[r] · x[b * columns ..< (b + 1) * columns]` for every row r and
    /// batch row b. The first `dense` batch rows are computed in float against dequantized
    /// weights (the dense kernel, `applyDense`), the others with int8 activations.
    func apply(_ x: UnsafePointer<Float>, batch: Int, dense: Int = 0, into y: UnsafeMutablePointer<Float>) {
        if dense > 0 { applyDense(x, batch: dense, into: y) }
        if batch > dense { applyQuantized(x + dense * columns, batch: batch - dense, into: y + dense * rows) }
    }

    /// Float products: the weight rows are split into tiles, and each thread dequantizes a
    /// tile and multiplies every batch row with it (`sl_matmul_rows_dense`). Each output is
    /// one fused multiply-add chain in k order, so a row's result depends neither on what
    /// else is in the batch, nor on the tiling, nor on the CPU's instruction set.
    func applyDense(_ x: UnsafePointer<Float>, batch: Int, into y: UnsafeMutablePointer<Float>) {
        let rows = self.rows
        let columns = self.columns
        let tileRows = Self.denseTileRows(rows: rows)
        let tiles = (rows + tileRows - 1) / tileRows
        let type = tensor.type.rawValue
        // A packed matrix's mapped pages were released: its rows come from the packed copy.
        let packed = self.packed != nil
        let addresses = (w: UInt(bitPattern: self.packed?.base ?? UnsafeMutableRawPointer(mutating: tensor.data)), x: UInt(bitPattern: x), y: UInt(bitPattern: y))
        ComputePool.parallelFor(tiles) { tile in
            let first = tile * tileRows
            let product = packed ? sl_matmul_packed_dense : sl_matmul_rows_dense
            let status = product(
                type, UnsafeRawPointer(bitPattern: addresses.w), Int64(columns), Int64(first), Int64(min(rows, first + tileRows)),
                UnsafePointer(bitPattern: addresses.x), Int64(batch), UnsafeMutablePointer(bitPattern: addresses.y), Int64(rows))
            precondition(status == 0, "dense product of \(self.tensor.name) failed (out of memory)")
        }
    }

    /// Weight rows per dense tile: a multiple of the kernel's 16-row panels, about two tiles
    /// per thread (each tile streams the whole batch's activations once).
    static func denseTileRows(rows: Int) -> Int {
        let perTile = (rows + 2 * ComputePool.threads - 1) / (2 * ComputePool.threads)
        return max(16, (perTile + 15) / 16 * 16)
    }

    /// Int8 products (activations quantized as llama.cpp does), split over the cores by
    /// weight rows. Each output element is one dot product in a fixed order, so results do
    /// not depend on the batch composition.
    func applyQuantized(_ x: UnsafePointer<Float>, batch: Int, into y: UnsafeMutablePointer<Float>) {
        let rows = self.rows
        let columns = self.columns
        // Many more chunks than threads, so that the threads finish together (the output
        // matrix's 262,144 rows in 64 chunks, not 16).
        // Multiples of sixteen rows: the packed kernel's groups.
        let chunkRows = max(16, rows / (ComputePool.threads * 32) / 16 * 16)
        let chunks = (rows + chunkRows - 1) / chunkRows
        let type = tensor.type.rawValue
        let dataAddress = UInt(bitPattern: tensor.data)
        let yAddress = UInt(bitPattern: y)
        let activationBytes = Int(sl_activation_row_bytes(type, Int64(columns)))
        if activationBytes > 0 {
            // Quantized weights: quantize the activations once (Q8_0 or Q8_K, as llama.cpp
            // does) and use integer dot products.
            let quantized = UnsafeMutableRawPointer.allocate(byteCount: activationBytes * batch, alignment: 64)
            defer { quantized.deallocate() }
            let xAddress = UInt(bitPattern: quantized)
            let sourceAddress = UInt(bitPattern: x)
            // Packed products also need per-block terms of the activations (a float scale and
            // a correction sum), computed here once rather than by every chunk.
            let blocksPerRow = columns / 32
            let termBlocks = packed != nil ? batch * blocksPerRow : 0
            let scales = UnsafeMutablePointer<Float>.allocate(capacity: termBlocks)
            let offsets = UnsafeMutablePointer<Int32>.allocate(capacity: termBlocks)
            defer {
                scales.deallocate()
                offsets.deallocate()
            }
            let terms = (scales: UInt(bitPattern: scales), offsets: UInt(bitPattern: offsets))
            // Rows are quantized independently: a few at a time on the pool.
            let rowsPerSlice = 4
            ComputePool.parallelFor((batch + rowsPerSlice - 1) / rowsPerSlice) { slice in
                let first = slice * rowsPerSlice, count = min(rowsPerSlice, batch - first)
                let target = UnsafeMutableRawPointer(bitPattern: xAddress)! + first * activationBytes
                sl_quantize_activations(type, UnsafePointer<Float>(bitPattern: sourceAddress)! + first * columns, Int64(count), Int64(columns), target)
                if termBlocks > 0 {
                    _ = sl_packed_activation_terms(
                        type, target, Int64(count * blocksPerRow), UnsafeMutablePointer<Float>(bitPattern: terms.scales)! + first * blocksPerRow,
                        UnsafeMutablePointer<Int32>(bitPattern: terms.offsets)! + first * blocksPerRow)
                }
            }
            if let packed {
                let packedAddress = UInt(bitPattern: packed.base)
                ComputePool.parallelFor(chunks) { chunk in
                    let begin = chunk * chunkRows
                    let status = sl_matmul_packed(
                        type, UnsafeRawPointer(bitPattern: packedAddress), Int64(columns), Int64(rows), Int64(begin),
                        Int64(min(rows, begin + chunkRows)), UnsafeRawPointer(bitPattern: xAddress),
                        UnsafePointer(bitPattern: terms.scales), UnsafePointer(bitPattern: terms.offsets), Int64(batch),
                        UnsafeMutablePointer(bitPattern: yAddress), Int64(rows))
                    precondition(status == 0, "packed product of \(self.tensor.name) failed")
                }
                return
            }
            ComputePool.parallelFor(chunks) { chunk in
                let begin = chunk * chunkRows
                sl_matmul_rows_quantized(
                    type, UnsafeRawPointer(bitPattern: dataAddress), Int64(columns), Int64(begin), Int64(min(rows, begin + chunkRows)),
                    UnsafeRawPointer(bitPattern: xAddress), Int64(batch), UnsafeMutablePointer(bitPattern: yAddress), Int64(rows))
            }
            return
        }
        let xAddress = UInt(bitPattern: x)
        ComputePool.parallelFor(chunks) { chunk in
            let scratch = UnsafeMutablePointer<Float>.allocate(capacity: columns)
            defer { scratch.deallocate() }
            let begin = chunk * chunkRows
            sl_matmul_rows(
                type, UnsafeRawPointer(bitPattern: dataAddress), Int64(columns), Int64(begin), Int64(min(rows, begin + chunkRows)),
                UnsafePointer(bitPattern: xAddress), Int64(batch),
                UnsafeMutablePointer(bitPattern: yAddress), Int64(rows), scratch)
        }
    }

    /// Row `index`, dequantized (embedding lookup).
    func row(_ index: Int, into output: UnsafeMutablePointer<Float>) {
        if let packed {  // the mapped rows were released
            sl_packed_row(tensor.type.rawValue, packed.base, Int64(columns), Int64(index), output)
            return
        }
        let rowBytes = columns / tensor.type.blockElements * tensor.type.blockBytes
        sl_dequantize_row(tensor.type.rawValue, tensor.data + index * rowBytes, output, Int64(columns))
    }
}

/// A Q8_0 or Q5_0 matrix repacked sixteen rows at a time (`sl_pack`), in 64-byte aligned memory
/// it owns. Packing reads each weight once; the mapped tensor's pages then leave the process's
/// resident set, so the weights are not held twice.
final class PackedWeights: @unchecked Sendable {  // immutable after init
    let base: UnsafeMutableRawPointer

    /// Packs `tensor`, or returns nil when it is not Q8_0 or Q5_0 with whole blocks per row.
    init?(_ tensor: GGUFTensor) {
        let rows = tensor.rowCount
        let columns = tensor.rowLength
        let type = tensor.type
        guard type == .q8_0 || type == .q5_0, rows > 0, columns > 0, columns % 32 == 0 else { return nil }
        let bytes = Int(sl_packed_bytes(type.rawValue, Int64(rows), Int64(columns)))
        base = UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64)
        let groups = (rows + 15) / 16
        let perSlice = 256
        let rowBytes = columns / 32 * type.blockBytes
        let addresses = (source: UInt(bitPattern: tensor.data), target: UInt(bitPattern: base))
        let mapping = tensor.mapping
        ComputePool.parallelFor((groups + perSlice - 1) / perSlice) { slice in
            let first = slice * perSlice, end = min(groups, first + perSlice)
            let source = UnsafeRawPointer(bitPattern: addresses.source)!
            _ = sl_pack(type.rawValue, source, Int64(rows), Int64(columns), Int64(first), Int64(end), UnsafeMutableRawPointer(bitPattern: addresses.target))
            // Released slice by slice, so that the two copies are never resident together.
            let firstRow = first * 16, endRow = min(rows, end * 16)
            mapping.release(source + firstRow * rowBytes, byteCount: (endRow - firstRow) * rowBytes)
        }
        mapping.release(tensor.data, byteCount: tensor.byteCount)  // the pages the slices shared
    }

    deinit { base.deallocate() }
}

/// A float vector from an F32 (or dequantized) tensor, e.g. a norm's weights.
func loadVector(_ tensor: GGUFTensor, length: Int) throws(InferenceError) -> [Float] {
    guard tensor.elementCount == length else {
        throw InferenceError(.missingTensor, "\(tensor.name) has \(tensor.elementCount) elements, expected \(length)")
    }
    return Dequantizer.dequantize(tensor.type, tensor.data, count: length)
}

/// How many threads the runtime spreads work over (default: every core).
public enum ComputePool {
    private static let configured = Atomic<Int>(0)

    /// The thread count in use.
    public static var threads: Int {
        let value = configured.load(ordering: .relaxed)
        return value > 0 ? value : max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// Makes large per-step buffers (logits, prefill activations) reuse heap memory instead of
    /// fresh zeroed mappings: +10–20 % aggregate decode at batch 16–32 here. Process-wide
    /// (glibc `mallopt`); the commands that run a model call it at start-up.
    public static func reuseLargeAllocations() {
        sl_reuse_large_allocations()
    }

    /// Sets the thread count (0 restores the default of one per core).
    public static func setThreads(_ count: Int) {
        configured.store(max(0, count), ordering: .relaxed)
    }

    /// Runs `body(start, count)` over slices of `0..<total` of `slice` elements (the last one
    /// shorter) on the pool: for element-wise work whose result does not depend on the split.
    static func parallelSlices(_ total: Int, slice: Int, _ body: @Sendable (Int, Int) -> Void) {
        guard total > 0 else { return }
        let slices = (total + slice - 1) / slice
        parallelFor(slices) { index in
            let start = index * slice
            body(start, min(slice, total - start))
        }
    }

    /// Runs `body(i)` for i in 0..<count on at most `threads` threads (the caller and the
    /// kernels' persistent pool; items are handed out one at a time).
    static func parallelFor(_ count: Int, _ body: @Sendable (Int) -> Void) {
        let threads = self.threads
        guard threads > 1, count > 1 else {
            for index in 0..<count { body(index) }
            return
        }
        withoutActuallyEscaping(body) { escapable in
            var closure = escapable
            withUnsafeMutablePointer(to: &closure) { pointer in
                sl_parallel_for(Int32(threads), Int64(count), { context, index in
                    context!.assumingMemoryBound(to: (@Sendable (Int) -> Void).self).pointee(Int(index))
                }, pointer)
            }
        }
    }
}

import Foundation
import Synchronization
