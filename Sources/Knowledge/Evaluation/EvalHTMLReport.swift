import Foundation

/// The eval report a person reads: the figures, a confidence histogram split into right and
/// wrong answers, the reliability curve (how often an answer of a given confidence is right),
/// and every case. One self-contained HTML file (inline SVG, no scripts).
public enum EvalHTMLReport {
    public static func render(_ file: EvalReportFile, title: String = "Sluice eval") -> String {
        let s = file.summary
        var html = """
            <!doctype html><html><head><meta charset="utf-8"><title>\(escape(title))</title>
            <style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}table{border-collapse:collapse}
            td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}th{background:#f3f3f3}
            .ok{background:#e8f6e8}.bad{background:#fbe3e3}.esc{background:#fff5d6}figure{display:inline-block;margin:0 24px 12px 0}</style>
            </head><body><h1>\(escape(title))</h1>
            <p>Knowledge version <code>\(escape(file.knowledgeVersion))</code>; \(file.configuration.sorted { $0.key < $1.key }.map { "\(escape($0.key)) = <code>\(escape($0.value))</code>" }.joined(separator: ", ")).</p>
            <table><tr><th>cases</th><th>answerable</th><th>must escalate</th><th>answered right, not escalated</th><th>automation</th>
            <th>accuracy of automated</th><th>wrong automated</th><th>escalation recall</th><th>latency p50 / p95 ms</th></tr>
            <tr><td>\(s.cases)</td><td>\(s.answerable)</td><td>\(s.mustEscalate)</td><td>\(percent(s.answeredRight))</td><td>\(percent(s.automationRate))</td>
            <td>\(percent(s.accuracy))</td><td>\(s.wrongAutomated)</td><td>\(percent(s.escalationRecall))</td>
            <td>\(Int(s.latencyMsP50)) / \(Int(s.latencyMsP95))</td></tr></table>
            <p>Escalation reasons: \(s.reasons.sorted { $0.value > $1.value }.map { "\(escape($0.key)) \($0.value)" }.joined(separator: ", "))</p>
            <p>Other thresholds on this set (answerable answered right / wrong automated): \(s.thresholdSweep.map { String(format: "%.2f → %d / %d", $0.threshold, $0.answeredRight, $0.wrongAutomated) }.joined(separator: "; "))</p>

            """
        html += "<figure>" + histogram(file.cases) + "<figcaption>Confidence of every answer: right (green) and wrong (red)</figcaption></figure>"
        html += "<figure>" + reliability(file.cases) + "<figcaption>Reliability: share of right answers per confidence bin (diagonal = calibrated)</figcaption></figure>"
        html += "<h2>Cases</h2><table><tr><th>#</th><th>question</th><th>answer</th><th>confidence</th><th>escalated</th><th>reasons</th><th>passages</th><th>verdict</th></tr>"
        for (index, result) in file.cases.enumerated() {
            let verdict = result.outcomeRight ? "ok" : (result.escalate ? "esc" : "bad")
            let label = result.outcomeRight ? "right" : (result.escalate ? "escalated (answerable)" : "WRONG automated")
            html += "<tr class=\"\(verdict)\"><td>\(index + 1)</td><td>\(escape(result.question))</td><td>\(escape(result.answer))</td>"
            html += "<td>\(String(format: "%.3f", result.confidence))</td><td>\(result.escalate ? "yes" : "no")</td><td>\(escape(result.reasons.joined(separator: ", ")))</td>"
            html += "<td>\(escape(result.passages.joined(separator: ", ")))</td><td>\(label)</td></tr>\n"
        }
        return html + "</table></body></html>\n"
    }

    static func percent(_ value: Double) -> String { String(format: "%.1f %%", value * 100) }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;")
            .replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    static let bins = 10

    static func bin(_ confidence: Double) -> Int { min(bins - 1, max(0, Int(confidence * Double(bins)))) }

    /// Stacked bars: per confidence bin, right answers below, wrong above.
    static func histogram(_ cases: [EvalResult]) -> String {
        var right = [Int](repeating: 0, count: bins)
        var wrong = [Int](repeating: 0, count: bins)
        for result in cases {
            if result.answerRight { right[bin(result.confidence)] += 1 } else { wrong[bin(result.confidence)] += 1 }
        }
        let tallest = max(1, zip(right, wrong).map { $0 + $1 }.max() ?? 1)
        let width = 360.0, height = 200.0, left = 30.0, bottom = 20.0
        let barWidth = (width - left) / Double(bins)
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height + bottom))\">"
        for index in 0..<bins {
            let x = left + Double(index) * barWidth
            let rightHeight = Double(right[index]) / Double(tallest) * height
            let wrongHeight = Double(wrong[index]) / Double(tallest) * height
            svg += "<rect x=\"\(x + 1)\" y=\"\(height - rightHeight)\" width=\"\(barWidth - 2)\" height=\"\(rightHeight)\" fill=\"#4a4\"><title>\(right[index]) right</title></rect>"
            svg += "<rect x=\"\(x + 1)\" y=\"\(height - rightHeight - wrongHeight)\" width=\"\(barWidth - 2)\" height=\"\(wrongHeight)\" fill=\"#c44\"><title>\(wrong[index]) wrong</title></rect>"
            svg += "<text x=\"\(x)\" y=\"\(height + 14)\" font-size=\"10\">\(String(format: "%.1f", Double(index) / Double(bins)))</text>"
        }
        svg += "<text x=\"0\" y=\"12\" font-size=\"10\">\(tallest)</text><line x1=\"\(left)\" y1=\"\(height)\" x2=\"\(width)\" y2=\"\(height)\" stroke=\"#333\"/></svg>"
        return svg
    }

    /// Per bin with answers: mean confidence (x) against the share of right answers (y).
    static func reliability(_ cases: [EvalResult]) -> String {
        let size = 220.0, margin = 30.0
        var svg = "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(size + margin))\" height=\"\(Int(size + margin))\">"
        svg += "<rect x=\"\(margin)\" y=\"0\" width=\"\(size)\" height=\"\(size)\" fill=\"none\" stroke=\"#999\"/>"
        svg += "<line x1=\"\(margin)\" y1=\"\(size)\" x2=\"\(margin + size)\" y2=\"0\" stroke=\"#bbb\" stroke-dasharray=\"4\"/>"
        var points: [(Double, Double, Int)] = []
        for index in 0..<bins {
            let members = cases.filter { bin($0.confidence) == index }
            guard !members.isEmpty else { continue }
            let meanConfidence = members.map(\.confidence).reduce(0, +) / Double(members.count)
            let shareRight = Double(members.filter(\.answerRight).count) / Double(members.count)
            points.append((meanConfidence, shareRight, members.count))
        }
        let path = points.map { "\(margin + $0.0 * size),\(size - $0.1 * size)" }.joined(separator: " ")
        svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"#36c\" stroke-width=\"2\"/>"
        for (x, y, count) in points {
            svg += "<circle cx=\"\(margin + x * size)\" cy=\"\(size - y * size)\" r=\"\(3 + min(6, Double(count) / 3))\" fill=\"#36c\"><title>\(count) answers, \(Int(y * 100)) % right</title></circle>"
        }
        svg += "<text x=\"\(margin)\" y=\"\(size + 14)\" font-size=\"10\">0</text><text x=\"\(margin + size - 10)\" y=\"\(size + 14)\" font-size=\"10\">1</text>"
        svg += "<text x=\"\(margin + size / 2 - 30)\" y=\"\(size + 26)\" font-size=\"10\">confidence</text><text x=\"0\" y=\"10\" font-size=\"10\">right</text></svg>"
        return svg
    }
}
