import Kernels

/// The tensor element types Sluice computes with (numbered as in GGUF). Weights stay in
/// these formats in memory; kernels dequantize blocks on the fly.
public enum TensorType: Int32, Sendable, CaseIterable, CustomStringConvertible {
    case f32 = 0
    case f16 = 1
    case q4_0 = 2
    case q5_0 = 6
    case q8_0 = 8
    case q4_K = 12
    case q5_K = 13
    case q6_K = 14
    case bf16 = 30

    /// Elements per block (1 for float types).
    public var blockElements: Int { Int(sl_block_elements(rawValue)) }
    /// Bytes per block.
    public var blockBytes: Int { Int(sl_block_bytes(rawValue)) }

    public var description: String { Self.name(of: UInt32(rawValue)) }

    /// GGUF's name for a type number, also for the types Sluice does not support.
    static func name(of raw: UInt32) -> String {
        let names: [UInt32: String] = [
            0: "F32", 1: "F16", 2: "Q4_0", 3: "Q4_1", 6: "Q5_0", 7: "Q5_1", 8: "Q8_0", 9: "Q8_1", 10: "Q2_K", 11: "Q3_K",
            12: "Q4_K", 13: "Q5_K", 14: "Q6_K", 15: "Q8_K", 16: "IQ2_XXS", 17: "IQ2_XS", 18: "IQ3_XXS", 19: "IQ1_S",
            20: "IQ4_NL", 21: "IQ3_S", 22: "IQ2_S", 23: "IQ4_XS", 24: "I8", 25: "I16", 26: "I32", 27: "I64", 28: "F64",
            29: "IQ1_M", 30: "BF16", 34: "TQ1_0", 35: "TQ2_0",
        ]
        return names[raw] ?? "type \(raw)"
    }
}

/// Dequantization entry points (used by tests and by the embedding lookup).
public enum Dequantizer {
    /// Dequantizes `count` elements (whole blocks) of `type` from `source`.
    public static func dequantize(_ type: TensorType, _ source: UnsafeRawPointer, count: Int) -> [Float] {
        [Float](unsafeUninitializedCapacity: count) { buffer, initialized in
            _ = sl_dequantize_row(type.rawValue, source, buffer.baseAddress, Int64(count))
            initialized = count
        }
    }

    /// Dequantizes raw block bytes (tests).
    public static func dequantize(_ type: TensorType, bytes: [UInt8]) -> [Float] {
        let count = bytes.count / type.blockBytes * type.blockElements
        return bytes.withUnsafeBytes { dequantize(type, $0.baseAddress!, count: count) }
    }
}
