import Foundation

/// Any JSON value, decoded with `Codable` (for the request's free-form `metadata`, echoed
/// back in the reply). Integers that fit 64 bits keep their exact value.
public indirect enum JSONValue: Codable, Sendable, Equatable {
    case null
    case bool(Bool)
    case integer(Int64)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if container.decodeNil() {
            self = .null
        } else if let value = try? container.decode(Bool.self) {
            self = .bool(value)
        } else if let value = try? container.decode(Int64.self) {
            self = .integer(value)
        } else if let value = try? container.decode(Double.self) {
            self = .number(value)
        } else if let value = try? container.decode(String.self) {
            self = .string(value)
        } else if let value = try? container.decode([JSONValue].self) {
            self = .array(value)
        } else {
            self = .object(try container.decode([String: JSONValue].self))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        switch self {
        case .null: try container.encodeNil()
        case .bool(let value): try container.encode(value)
        case .integer(let value): try container.encode(value)
        case .number(let value): try container.encode(value)
        case .string(let value): try container.encode(value)
        case .array(let value): try container.encode(value)
        case .object(let value): try container.encode(value)
        }
    }
}

/// A JSON number as sent, kept exact: integral values that fit 64 bits as integers, all of
/// them as a double too. Booleans and strings are not numbers (`0` and `1` are).
struct JSONNumber: Decodable, Sendable {
    let double: Double
    let signed: Int64?
    let unsigned: UInt64?

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        if (try? container.decode(Bool.self)) != nil {
            throw DecodingError.typeMismatch(Double.self, .init(codingPath: decoder.codingPath, debugDescription: "a boolean is not a number"))
        }
        if let value = try? container.decode(Int64.self) {
            (double, signed, unsigned) = (Double(value), value, UInt64(exactly: value))
        } else if let value = try? container.decode(UInt64.self) {
            (double, signed, unsigned) = (Double(value), nil, value)
        } else {
            let value = try container.decode(Double.self)
            (double, signed, unsigned) = (value, Int64(exactly: value), UInt64(exactly: value))
        }
    }
}
