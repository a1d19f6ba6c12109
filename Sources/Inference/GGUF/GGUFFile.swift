import Crypto
import Foundation
import Kernels

/// A metadata value of a GGUF file.
public enum GGUFValue: Sendable, Equatable {
    case uint(UInt64)
    case int(Int64)
    case float(Double)
    case bool(Bool)
    case string(String)
    case array([GGUFValue])

    public var intValue: Int? {
        switch self {
        case .uint(let v): Int(exactly: v)
        case .int(let v): Int(exactly: v)
        default: nil
        }
    }

    public var doubleValue: Double? {
        switch self {
        case .float(let v): v
        case .uint(let v): Double(v)
        case .int(let v): Double(v)
        default: nil
        }
    }

    public var stringValue: String? { if case .string(let v) = self { v } else { nil } }
    public var boolValue: Bool? { if case .bool(let v) = self { v } else { nil } }
    public var arrayValue: [GGUFValue]? { if case .array(let v) = self { v } else { nil } }
}

/// One tensor's description and where its bytes are in the mapped file.
public struct GGUFTensor: @unchecked Sendable {  // `data` points into the immutable mapping it retains
    public let name: String
    /// Dimensions as GGUF lists them: innermost (contiguous) first, e.g. `[640, 262144]` for
    /// 262,144 rows of 640.
    public let dimensions: [Int]
    public let type: TensorType
    /// Byte offset from the start of the data section.
    public let offset: Int
    public let byteCount: Int
    let data: UnsafeRawPointer
    /// Keeps the mapping (and so `data`) alive as long as the tensor is in use.
    let mapping: MappedFile

    public var elementCount: Int { dimensions.reduce(1, *) }
    /// The tensor's bytes in the mapped file.
    public var dataPointer: UnsafeRawPointer { data }
    /// Elements per row (the innermost dimension).
    public var rowLength: Int { dimensions.first ?? 0 }
    public var rowCount: Int { elementCount / max(rowLength, 1) }
}

/// A GGUF v3 file, memory-mapped: metadata, tensor infos, and tensor data in place.
///
/// Every length and offset is checked against the file size, so a truncated or corrupt file
/// fails with a clear ``InferenceError`` instead of a crash.
public final class GGUFFile: @unchecked Sendable {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    public let tensors: [String: GGUFTensor]
    /// Tensor names in file order.
    public let tensorNames: [String]
    public let fileSize: Int
    let mapping: MappedFile

    public init(path: String) throws(InferenceError) {
        let mapping = try MappedFile(path: path)
        var reader = ByteReader(base: mapping.base, size: mapping.size, path: path)
        guard mapping.size >= 24, try reader.read(UInt32.self) == 0x4655_4747 else {
            throw InferenceError(.corrupt, "\(path) is not a GGUF file (bad magic)")
        }
        let version = try reader.read(UInt32.self)
        guard version == 3 || version == 2 else {
            throw InferenceError(.unsupportedVersion, "\(path) is GGUF version \(version); Sluice reads versions 2 and 3")
        }
        let tensorCount = try reader.count(reader.read(UInt64.self), "tensor count")
        let metadataCount = try reader.count(reader.read(UInt64.self), "metadata count")
        var metadata: [String: GGUFValue] = [:]
        for _ in 0..<metadataCount {
            let key = try reader.readString()
            metadata[key] = try reader.readValue(type: reader.read(UInt32.self), depth: 0)
        }
        var infos: [(String, [Int], UInt32, Int)] = []
        for _ in 0..<tensorCount {
            let name = try reader.readString()
            let dimensionCount = try reader.read(UInt32.self)
            guard dimensionCount >= 1, dimensionCount <= 4 else {
                throw InferenceError(.corrupt, "tensor \(name) has \(dimensionCount) dimensions")
            }
            var dimensions: [Int] = []
            for _ in 0..<dimensionCount { dimensions.append(try reader.count(reader.read(UInt64.self), "dimension of \(name)")) }
            let type = try reader.read(UInt32.self)
            let offset = try reader.count(reader.read(UInt64.self), "offset of \(name)")
            infos.append((name, dimensions, type, offset))
        }
        let alignment = metadata["general.alignment"]?.intValue ?? 32
        guard alignment > 0, alignment & (alignment - 1) == 0 else {
            throw InferenceError(.corrupt, "general.alignment \(alignment) is not a power of two")
        }
        let dataStart = (reader.offset + alignment - 1) / alignment * alignment
        var tensors: [String: GGUFTensor] = [:]
        for (name, dimensions, rawType, offset) in infos {
            guard let type = TensorType(rawValue: Int32(rawType)) else {
                throw InferenceError(.unsupportedTensorType, "tensor \(name) has type \(TensorType.name(of: rawType)), which Sluice does not support")
            }
            let (elements, overflow) = dimensions.reduce((1, false)) { partial, next in
                let (product, o) = partial.0.multipliedReportingOverflow(by: next)
                return (product, partial.1 || o)
            }
            guard !overflow, elements % type.blockElements == 0, (dimensions.first ?? 0) % type.blockElements == 0 else {
                throw InferenceError(.corrupt, "tensor \(name): \(dimensions) does not fit \(type) blocks of \(type.blockElements)")
            }
            let byteCount = elements / type.blockElements * type.blockBytes
            guard offset % alignment == 0 || version == 2 else {
                throw InferenceError(.corrupt, "tensor \(name) is not aligned to \(alignment) bytes")
            }
            guard dataStart + offset + byteCount <= mapping.size, dataStart + offset >= dataStart else {
                throw InferenceError(
                    .truncated,
                    "\(path) is truncated: tensor \(name) needs bytes up to \(dataStart + offset + byteCount), the file has \(mapping.size)")
            }
            tensors[name] = GGUFTensor(
                name: name, dimensions: dimensions, type: type, offset: offset, byteCount: byteCount,
                data: mapping.base + dataStart + offset, mapping: mapping)
        }
        self.path = path
        self.version = version
        self.metadata = metadata
        self.tensors = tensors
        self.tensorNames = infos.map(\.0)
        self.fileSize = mapping.size
        self.mapping = mapping
    }

    /// `general.architecture`.
    public var architecture: String? { metadata["general.architecture"]?.stringValue }

    /// The tensor named `name`, or a `.missingTensor` error naming it.
    public func tensor(_ name: String) throws(InferenceError) -> GGUFTensor {
        guard let tensor = tensors[name] else { throw InferenceError(.missingTensor, "\(path) has no tensor \(name)") }
        return tensor
    }

    /// SHA-256 of the whole file, hex (reads every page once).
    public func sha256() -> String {
        var hasher = SHA256()
        let chunk = 1 << 22
        var offset = 0
        while offset < fileSize {
            let length = min(chunk, fileSize - offset)
            hasher.update(bufferPointer: UnsafeRawBufferPointer(start: mapping.base + offset, count: length))
            offset += length
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }

    /// Throws `.checksumMismatch` unless the file's SHA-256 equals `expected` (hex).
    public func verify(sha256 expected: String) throws(InferenceError) {
        let actual = sha256()
        guard actual == expected.lowercased() else {
            throw InferenceError(.checksumMismatch, "\(path) has SHA-256 \(actual), expected \(expected.lowercased())")
        }
    }
}

/// Bounds-checked little-endian reads from the mapped header.
struct ByteReader {
    let base: UnsafeRawPointer
    let size: Int
    let path: String
    var offset = 0

    mutating func read<T: FixedWidthInteger>(_: T.Type) throws(InferenceError) -> T {
        guard offset + MemoryLayout<T>.size <= size else {
            throw InferenceError(.truncated, "\(path) is truncated in its header (at byte \(offset))")
        }
        let value = T(littleEndian: base.loadUnaligned(fromByteOffset: offset, as: T.self))
        offset += MemoryLayout<T>.size
        return value
    }

    /// A count or size that must be plausible for this file (each element takes ≥ 1 byte).
    func count(_ value: UInt64, _ what: String) throws(InferenceError) -> Int {
        guard value <= UInt64(Int.max), Int(value) <= size * 8 else {
            throw InferenceError(.corrupt, "\(path): implausible \(what) \(value)")
        }
        return Int(value)
    }

    mutating func readString() throws(InferenceError) -> String {
        let length = try count(read(UInt64.self), "string length")
        guard offset + length <= size else {
            throw InferenceError(.truncated, "\(path) is truncated in its header (string at byte \(offset))")
        }
        let string = String(decoding: UnsafeRawBufferPointer(start: base + offset, count: length), as: UTF8.self)
        offset += length
        return string
    }

    mutating func readValue(type: UInt32, depth: Int) throws(InferenceError) -> GGUFValue {
        switch type {
        case 0: return .uint(UInt64(try read(UInt8.self)))
        case 1: return .int(Int64(try read(Int8.self)))
        case 2: return .uint(UInt64(try read(UInt16.self)))
        case 3: return .int(Int64(try read(Int16.self)))
        case 4: return .uint(UInt64(try read(UInt32.self)))
        case 5: return .int(Int64(try read(Int32.self)))
        case 6: return .float(Double(Float(bitPattern: try read(UInt32.self))))
        case 7: return .bool(try read(UInt8.self) != 0)
        case 8: return .string(try readString())
        case 9:
            guard depth < 4 else { throw InferenceError(.corrupt, "\(path): arrays nested too deeply") }
            let elementType = try read(UInt32.self)
            let count = try count(read(UInt64.self), "array length")
            var values: [GGUFValue] = []
            values.reserveCapacity(count)
            for _ in 0..<count { values.append(try readValue(type: elementType, depth: depth + 1)) }
            return .array(values)
        case 10: return .uint(try read(UInt64.self))
        case 11: return .int(Int64(bitPattern: try read(UInt64.self)))
        case 12: return .float(Double(bitPattern: try read(UInt64.self)))
        default: throw InferenceError(.corrupt, "\(path): unknown metadata value type \(type) at byte \(offset)")
        }
    }
}
