import Foundation
import Inference
import Testing

@Suite("Dequantizers against the gguf package's numpy reference")
struct DequantizerTests {
    struct Reference: Decodable {
        let bytes: String
        let values: [Double]
    }

    /// Integer formats must match exactly: the same quantized integers times the same
    /// float32 scales. Float formats convert exactly too (F16/BF16 → F32 is lossless).
    @Test("random blocks dequantize exactly as the reference does", arguments: TensorType.allCases)
    func matchesReference(type: TensorType) throws {
        let blocks = type.blockElements == 1 ? 1024 : 64
        let output = try Repository.runPython("dequant_reference.py", [type.description, String(blocks), "7"])
        let reference = try JSONDecoder().decode(Reference.self, from: output)
        let bytes = try #require(Data(base64Encoded: reference.bytes))
        let values = Dequantizer.dequantize(type, bytes: Array(bytes))
        #expect(values.count == reference.values.count)
        var mismatches = 0
        for (index, (ours, theirs)) in zip(values, reference.values).enumerated() where ours != Float(theirs) {
            if mismatches < 5 { Issue.record("\(type) element \(index): \(ours) != \(theirs)") }
            mismatches += 1
        }
        #expect(mismatches == 0, "\(mismatches) of \(values.count) elements differ")
    }
}
