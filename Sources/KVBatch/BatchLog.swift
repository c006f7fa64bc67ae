// What a batch says while it runs: plain lines on stderr, or one JSON object per event with --log-json.
import Foundation
import KVReport
import KVStat

final class BatchLog: @unchecked Sendable {
    // @unchecked Sendable: events are written from the scheduling thread only.
    let json: Bool
    let quiet: Bool

    init(json: Bool, quiet: Bool) {
        self.json = json
        self.quiet = quiet
    }

    func event(_ name: String, _ fields: [String: Any]) {
        if json {
            var object = fields
            object["event"] = name
            JSONText.event(object)
        } else if !quiet, name == "failed" {
            let line = BatchLog.line(fields["path"] as? String ?? "", fields["message"] as? String ?? "")
            FileHandle.standardError.write(Data("kvstat batch: failed: \(line)\n".utf8))
        }
    }

    func summary(_ s: BatchSummary) {
        let gb = Double(s.bytesRead) / 1e9
        if json {
            JSONText.event([
                "event": "summary", "done": s.done, "skipped": s.skipped, "failed": s.failed.count, "tokens": s.tokens,
                "gb_read": (gb * 1000).rounded() / 1000, "seconds": (s.seconds * 100).rounded() / 100,
                "corpus_dumps": s.corpusDumps,
                "corpora": s.corpora.map {
                    ["folder": $0.folder, "dumps": $0.dumps, "dumps_per_kind": $0.dumpsPerKind]
                },
                "ignored": s.ignored, "exit_code": Int(s.exitCode),
                "corpus_error": s.corpusFailure.map { BatchLog.line($0.path, $0.message) } ?? NSNull(),
            ])
            return
        }
        guard !quiet else { return }
        var text = String(
            format: "kvstat batch: %d done, %d skipped, %d failed; %d tokens, %.2f GB read, %.1f s; ", s.done,
            s.skipped, s.failed.count, s.tokens, gb, s.seconds)
        text += BatchLog.corpora(s)
        if s.ignored > 0 { text += "; \(s.ignored) files kvstat wrote left out of the inputs" }
        text += "\n"
        for f in s.failed { text += "  failed: \(BatchLog.line(f.path, f.message))\n" }
        if let f = s.corpusFailure { text += "  corpus failed: \(BatchLog.line(f.path, f.message))\n" }
        for note in s.corpusNotes { text += "  \(note)\n" }
        FileHandle.standardError.write(Data(text.utf8))
    }

    /// "corpus of 3 dumps (queries of 1)", or with several models "corpora of 3 dumps (OUT/corpus/6L-12kv-32d;
    /// queries of 1), 1 dump (OUT/corpus/2L-2kv-8d)": each kind held by fewer dumps than its corpus, with its count.
    static func corpora(_ s: BatchSummary) -> String {
        func dumps(_ n: Int) -> String { n == 1 ? "1 dump" : "\(n) dumps" }
        func fewer(_ c: (folder: String, dumps: Int, dumpsPerKind: [String: Int])) -> [String] {
            c.dumpsPerKind.filter { $0.value < c.dumps }.sorted { $0.key < $1.key }
                .map { "\(TensorKind(rawValue: $0.key)?.plural ?? $0.key) of \($0.value)" }
        }
        guard s.corpora.count > 1 else {
            let kinds = s.corpora.first.map(fewer) ?? []
            return "corpus of \(dumps(s.corpusDumps))" + (kinds.isEmpty ? "" : " (\(kinds.joined(separator: ", ")))")
        }
        return "corpora of "
            + s.corpora.map { "\(dumps($0.dumps)) (\(([$0.folder] + fewer($0)).joined(separator: "; ")))" }
            .joined(separator: ", ")
    }

    /// `path: message`, without repeating a path the child's message already starts with.
    static func line(_ path: String, _ message: String) -> String {
        message.hasPrefix(path) ? message : "\(path): \(message)"
    }
}
