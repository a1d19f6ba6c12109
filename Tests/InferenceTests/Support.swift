import Foundation
import Testing

/// Paths of the repository, the project's Python (with `gguf`) and the real model.
enum Repository {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
    static let python = root.appendingPathComponent(".venv/bin/python").path
    static let scripts = root.appendingPathComponent("Tests/InferenceTests/Scripts")
    static let model = root.appendingPathComponent("models/gemma-3-270m-q4_k_m.gguf").path

    struct ScriptFailed: Error, CustomStringConvertible {
        let description: String
    }

    /// Runs a reference script with the project's Python and returns its standard output.
    static func runPython(_ script: String, _ arguments: [String]) throws -> Data {
        guard FileManager.default.isExecutableFile(atPath: python) else {
            throw ScriptFailed(description: "no .venv: run ops/bootstrap (the reference needs the gguf package)")
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [scripts.appendingPathComponent(script).path] + arguments
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw ScriptFailed(description: "\(script) failed: \(String(decoding: errors, as: UTF8.self))")
        }
        return data
    }

    static func temporaryFile(_ name: String) -> String {
        FileManager.default.temporaryDirectory.appendingPathComponent("sluice-\(UUID().uuidString)-\(name)").path
    }
}
