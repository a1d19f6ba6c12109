/// The one error type of the runtime.
public struct InferenceError: Error, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { name }

        /// The file cannot be opened or mapped.
        public static let cannotOpen = Code("cannotOpen")
        /// The file ends before the structure it announces.
        public static let truncated = Code("truncated")
        /// The file is not GGUF, or a field holds an impossible value.
        public static let corrupt = Code("corrupt")
        /// A GGUF version other than 3 (2 is read too).
        public static let unsupportedVersion = Code("unsupportedVersion")
        /// An architecture Sluice has no implementation of.
        public static let unsupportedArchitecture = Code("unsupportedArchitecture")
        /// A tensor type Sluice cannot compute with.
        public static let unsupportedTensorType = Code("unsupportedTensorType")
        /// A required tensor or metadata key is missing or has the wrong shape.
        public static let missingTensor = Code("missingTensor")
        /// The file's SHA-256 differs from the configured one.
        public static let checksumMismatch = Code("checksumMismatch")
        /// A request the runtime cannot serve (context full, empty prompt, bad parameter).
        public static let invalidRequest = Code("invalidRequest")
    }

    public let code: Code
    public let message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "InferenceError.\(code): \(message)" }
}
