import Foundation
import GRDB

/// A column value in the form the hash chain serialises it.
///
/// The canonical serialisation of a row is a JSON array of `[name, value]` pairs in column
/// order, without whitespace: text as JSON strings (UTF-8, only `"` `\` and control
/// characters escaped), integers in decimal, reals in Swift's shortest round-trip form,
/// times as `YYYY-MM-DDTHH:MM:SS.mmmZ`, blobs as base64 strings, absent values as `null`.
/// It is documented so that auditors can re-implement verification independently.
enum CanonicalValue: Equatable {
    case text(String?)
    case integer(Int64?)
    case real(Double?)
    case time(Date?)
    case blob(Data?)

    var databaseValue: (any DatabaseValueConvertible)? {
        switch self {
        case .text(let value): value
        case .integer(let value): value
        case .real(let value): value
        case .time(let value): value.map(CanonicalTime.format)
        case .blob(let value): value
        }
    }

    func appendJSON(to output: inout String) {
        var bytes: [UInt8] = []
        appendJSON(to: &bytes)
        output += String(decoding: bytes, as: UTF8.self)
    }

    func appendJSON(to output: inout [UInt8]) {
        switch self {
        case .text(let value?): CanonicalJSON.appendString(value, to: &output)
        case .integer(let value?): output.append(contentsOf: String(value).utf8)
        case .real(let value?): output.append(contentsOf: (value.isFinite ? "\(value)" : "\"\(value)\"").utf8)
        case .time(let value?): CanonicalJSON.appendString(CanonicalTime.format(value), to: &output)
        case .blob(let value?): CanonicalJSON.appendString(value.base64EncodedString(), to: &output)
        default: output.append(contentsOf: "null".utf8)
        }
    }
}

enum CanonicalJSON {
    /// `[["name",value],…]` for `fields`, as UTF-8.
    static func serialise(_ fields: [(String, CanonicalValue)]) -> [UInt8] {
        var output: [UInt8] = [UInt8(ascii: "[")]
        output.reserveCapacity(1024)
        for (index, (name, value)) in fields.enumerated() {
            appendField(name, value, to: &output, leadingComma: index > 0)
        }
        output.append(UInt8(ascii: "]"))
        return output
    }

    /// One `["name",value]` pair (after a comma unless it is the first).
    static func appendField(_ name: String, _ value: CanonicalValue, to output: inout [UInt8], leadingComma: Bool) {
        if leadingComma { output.append(UInt8(ascii: ",")) }
        output.append(contentsOf: [UInt8(ascii: "["), UInt8(ascii: "\"")])
        output.append(contentsOf: name.utf8)
        output.append(contentsOf: [UInt8(ascii: "\""), UInt8(ascii: ",")])
        value.appendJSON(to: &output)
        output.append(UInt8(ascii: "]"))
    }

    static func appendString(_ value: String, to output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        var value = value
        value.withUTF8 { bytes in
            var run = 0  // start of the bytes not yet copied (none of which needs escaping)
            for (index, byte) in bytes.enumerated() where byte < 0x20 || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") {
                output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run..<index]))
                run = index + 1
                switch byte {
                case UInt8(ascii: "\""): output.append(contentsOf: [92, 34])
                case UInt8(ascii: "\\"): output.append(contentsOf: [92, 92])
                case UInt8(ascii: "\n"): output.append(contentsOf: [92, 110])
                case UInt8(ascii: "\r"): output.append(contentsOf: [92, 114])
                case UInt8(ascii: "\t"): output.append(contentsOf: [92, 116])
                default:
                    output.append(contentsOf: "\\u00".utf8)
                    output.append(contentsOf: String(byte, radix: 16).leftPadded(to: 2).utf8)
                }
            }
            output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[run...]))
        }
        output.append(UInt8(ascii: "\""))
    }
}

/// Times as the audit log stores and hashes them: UTC, millisecond precision, ISO 8601 with
/// a `Z` suffix (which SQLite's date functions accept).
public enum CanonicalTime {
    /// Whole milliseconds since 1970, rounded to nearest (so a parsed value formats back
    /// to the same text).
    public static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded())
    }

    /// `date` rounded to the millisecond, as stored.
    public static func normalised(_ date: Date) -> Date {
        Date(timeIntervalSince1970: Double(milliseconds(date)) / 1000)
    }

    public static func format(_ date: Date) -> String {
        let ms = milliseconds(date)
        var seconds = time_t(ms.floorDiv(1000))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        var bytes = [UInt8](repeating: 0, count: 24)
        func put(_ value: Int32, at offset: Int, width: Int) {
            var value = value
            for index in stride(from: offset + width - 1, through: offset, by: -1) {
                bytes[index] = UInt8(48 + value % 10)
                value /= 10
            }
        }
        put(parts.tm_year + 1900, at: 0, width: 4)
        bytes[4] = UInt8(ascii: "-")
        put(parts.tm_mon + 1, at: 5, width: 2)
        bytes[7] = UInt8(ascii: "-")
        put(parts.tm_mday, at: 8, width: 2)
        bytes[10] = UInt8(ascii: "T")
        put(parts.tm_hour, at: 11, width: 2)
        bytes[13] = UInt8(ascii: ":")
        put(parts.tm_min, at: 14, width: 2)
        bytes[16] = UInt8(ascii: ":")
        put(parts.tm_sec, at: 17, width: 2)
        bytes[19] = UInt8(ascii: ".")
        put(Int32(ms.floorMod(1000)), at: 20, width: 3)
        bytes[23] = UInt8(ascii: "Z")
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Parses `YYYY-MM-DDTHH:MM:SS[.mmm]Z` (also with a space instead of `T`).
    public static func parse(_ text: String?) -> Date? {
        guard let text else { return nil }
        let bytes = Array(text.utf8)
        guard bytes.count >= 20, bytes.last == UInt8(ascii: "Z") else { return nil }
        func number(_ from: Int, _ count: Int) -> Int32? {
            guard from + count <= bytes.count else { return nil }
            var value: Int32 = 0
            for byte in bytes[from..<(from + count)] {
                guard (48...57).contains(byte) else { return nil }
                value = value * 10 + Int32(byte - 48)
            }
            return value
        }
        guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2),
              let hour = number(11, 2), let minute = number(14, 2), let second = number(17, 2)
        else { return nil }
        var millis: Int32 = 0
        if bytes.count == 24, bytes[19] == UInt8(ascii: ".") {
            guard let value = number(20, 3) else { return nil }
            millis = value
        } else if bytes.count != 20 {
            return nil
        }
        var parts = tm()
        parts.tm_year = year - 1900
        parts.tm_mon = month - 1
        parts.tm_mday = day
        parts.tm_hour = hour
        parts.tm_min = minute
        parts.tm_sec = second
        let seconds = Int64(timegm(&parts))
        return Date(timeIntervalSince1970: Double(seconds * 1000 + Int64(millis)) / 1000)
    }
}

extension String {
    func leftPadded(to width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}

extension Int64 {
    func floorDiv(_ divisor: Int64) -> Int64 { (self - floorMod(divisor)) / divisor }
    func floorMod(_ divisor: Int64) -> Int64 { ((self % divisor) + divisor) % divisor }
}
