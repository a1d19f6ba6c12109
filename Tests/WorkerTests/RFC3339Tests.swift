import Foundation
import Inference
import Testing
@testable import Worker

@Suite("RFC 3339 deadlines (unit)")
struct RFC3339Tests {
    /// The formatter the codec used before: the reference for every valid form.
    static func reference(_ text: String) -> Date? {
        let fractional = ISO8601DateFormatter()
        fractional.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return fractional.date(from: text) ?? ISO8601DateFormatter().date(from: text)
    }

    @Test("20,000 random times, with and without fractions, in UTC and at offsets, parse to the reference formatter's instant")
    func agreesWithFoundation() {
        var random = SplitMix64(seed: 20_261_204)
        let formatter = ISO8601DateFormatter()
        for _ in 0..<20_000 {
            // 1900 ... 2200, whole seconds, then an offset and a fraction of up to 6 digits
            let instant = Double(Int64(random.next() % 9_467_280_000) - 2_208_988_800)
            let offsetMinutes = Int(random.next() % (2 * 14 * 60 + 1)) - 14 * 60
            formatter.timeZone = TimeZone(secondsFromGMT: offsetMinutes * 60)
            var text = formatter.string(from: Date(timeIntervalSince1970: instant))
            let digits = Int(random.next() % 7)
            var fraction = 0.0
            if digits > 0 {
                let value = Int(random.next() % UInt64(pow(10, Double(digits))))
                fraction = Double(value) / pow(10, Double(digits))
                let fractionText = String(value).leftPadded(to: digits)
                let zone = text.index(text.startIndex, offsetBy: 19)
                text.insert(contentsOf: "." + fractionText, at: zone)
            }
            let parsed = RFC3339.date(from: text)
            // Date keeps seconds since 2001: the instant survives to well under a microsecond.
            #expect(parsed.map { abs($0.timeIntervalSince1970 - (instant + fraction)) < 1e-6 } == true, "\(text)")
            if let expected = Self.reference(text) {
                #expect(abs(parsed!.timeIntervalSince(expected)) < 0.001, "\(text): \(parsed!) vs \(expected)")
            }
            if parsed == nil { return }
        }
    }

    @Test("the forms RFC 3339 gives are read; anything else is not a time")
    func forms() throws {
        let noon = Date(timeIntervalSince1970: 1_796_385_600)  // 2026-12-04T12:00:00Z
        for text in ["2026-12-04T12:00:00Z", "2026-12-04t12:00:00z", "2026-12-04T20:00:00+08:00", "2026-12-04T07:30:00-04:30",
                     "2026-12-04T20:00:00+0800", "2026-12-04T20:00:00+08"] {
            #expect(RFC3339.date(from: text) == noon, "\(text)")
        }
        #expect(RFC3339.date(from: "2026-12-04T12:00:00.25Z") == noon.addingTimeInterval(0.25))
        #expect(RFC3339.date(from: "2024-02-29T00:00:00Z") != nil, "a leap day")
        for text in ["", "2026-12-04", "2026-12-04T12:00:00", "2026-12-04 12:00:00Z", "2026-12-04T12:00Z", "2026-13-01T00:00:00Z",
                     "2026-02-29T00:00:00Z", "2026-04-31T00:00:00Z", "2026-12-04T24:00:00Z", "2026-12-04T12:60:00Z", "2026-12-04T12:00:60Z",
                     "2026-12-04T12:00:00.Z", "2026-12-04T12:00:00+8", "2026-12-04T12:00:00+08:0", "2026-12-04T12:00:00+24:00", "2026-12-04T12:00:00Zjunk",
                     "２０２６-12-04T12:00:00Z", "+2026-12-04T12:00:00Z", "tomorrow"] {
            #expect(RFC3339.date(from: text) == nil, "\(text) was read as a time")
        }
    }
}

private extension String {
    func leftPadded(to width: Int) -> String { String(repeating: "0", count: max(0, width - count)) + self }
}
