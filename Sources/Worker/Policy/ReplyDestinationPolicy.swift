/// Where replies may go: policy, never whatever a producer writes. Allowed are the default
/// reply topic and the entries of `worker.reply_topics` (exact names, or prefixes written
/// with a trailing `*`). The worker's own topics (requests, escalations, dead letters) and
/// internal topics (`__*`) are never valid, whatever the list says.
public struct ReplyDestinationPolicy: Sendable, Equatable {
    public let defaultTopic: String
    private let exact: Set<String>
    private let prefixes: [String]
    private let forbidden: Set<String>

    /// - Parameters:
    ///   - defaultTopic: the configured reply topic (always allowed).
    ///   - allowed: exact topic names and `prefix*` patterns.
    ///   - forbidden: topics that may never receive replies (requests, escalations, dead letters).
    public init(defaultTopic: String, allowed: [String], forbidden: [String]) {
        self.defaultTopic = defaultTopic
        exact = Set(allowed.filter { !$0.hasSuffix("*") })
        prefixes = allowed.filter { $0.hasSuffix("*") }.map { String($0.dropLast()) }
        self.forbidden = Set(forbidden)
    }

    /// Why `topic` may not receive replies, or nil when it may.
    public func refusal(_ topic: String) -> String? {
        if topic.hasPrefix("__") { return "\(topic) is an internal topic" }
        if forbidden.contains(topic) { return "\(topic) is one of the worker's own topics" }
        if topic == defaultTopic || exact.contains(topic) || prefixes.contains(where: { topic.hasPrefix($0) }) { return nil }
        return "\(topic) is not in worker.reply_topics"
    }
}
