import Dispatch
import Kernels

/// A weight matrix used in its GGUF encoding: `rows` rows of `columns` elements
/// (GGUF dimensions `[columns, rows]`).
struct WeightMatrix: @unchecked Sendable {  // reads immutable mapped memory only
    let tensor: GGUFTensor

    var rows: Int { tensor.rowCount }
    var columns: Int { tensor.rowLength }

    init(_ tensor: GGUFTensor, rows: Int? = nil, columns: Int? = nil) throws(InferenceError) {
        if let rows, tensor.rowCount != rows {
            throw InferenceError(.missingTensor, "\(tensor.name) has \(tensor.rowCount) rows, expected \(rows)")
        }
        if let columns, tensor.rowLength != columns {
            throw InferenceError(.missingTensor, "\(tensor.name) has rows of \(tensor.rowLength), expected \(columns)")
        }
        self.tensor = tensor
    }

    /// `y[b * rows + r] = W[r] · x[b * columns ..< (b + 1) * columns]` for every row r and
    /// batch row b, split over the cores by weight rows. Each output element is one dot
    /// product in a fixed order, so results do not depend on the batch composition.
    func apply(_ x: UnsafePointer<Float>, batch: Int, into y: UnsafeMutablePointer<Float>) {
        let rows = self.rows
        let columns = self.columns
        let chunkRows = max(16, rows / (ComputePool.threads * 8))
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
            sl_quantize_activations(type, x, Int64(batch), Int64(columns), quantized)
            let xAddress = UInt(bitPattern: quantized)
            DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
                let begin = chunk * chunkRows
                sl_matmul_rows_quantized(
                    type, UnsafeRawPointer(bitPattern: dataAddress), Int64(columns), Int64(begin), Int64(min(rows, begin + chunkRows)),
                    UnsafeRawPointer(bitPattern: xAddress), Int64(batch), UnsafeMutablePointer(bitPattern: yAddress), Int64(rows))
            }
            return
        }
        let xAddress = UInt(bitPattern: x)
        DispatchQueue.concurrentPerform(iterations: chunks) { chunk in
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
        let rowBytes = columns / tensor.type.blockElements * tensor.type.blockBytes
        sl_dequantize_row(tensor.type.rawValue, tensor.data + index * rowBytes, output, Int64(columns))
    }
}

/// A float vector from an F32 (or dequantized) tensor, e.g. a norm's weights.
func loadVector(_ tensor: GGUFTensor, length: Int) throws(InferenceError) -> [Float] {
    guard tensor.elementCount == length else {
        throw InferenceError(.missingTensor, "\(tensor.name) has \(tensor.elementCount) elements, expected \(length)")
    }
    return Dequantizer.dequantize(tensor.type, tensor.data, count: length)
}

/// How many cores the runtime spreads work over.
enum ComputePool {
    static let threads = max(1, ProcessInfo.processInfo.activeProcessorCount)
}

import Foundation
