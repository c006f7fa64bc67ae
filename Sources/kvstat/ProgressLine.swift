// Progress on stderr: one self-overwriting line (stage, blocks done, MB/s, ETA) when stderr is a terminal,
// or, with --log-json, one JSON object per event for schedulers and log collectors.
import Foundation
import KVReport
import KVStat

final class ProgressLine: @unchecked Sendable {
    // @unchecked Sendable: used from the analysing thread only.
    enum Mode { case off, terminal, json }

    private let mode: Mode
    private var stageStart = Date()
    private var stage = ""
    private var lastDraw = Date.distantPast
    /// When the previous report arrived: a new stage starts when the previous one ended.
    private var lastReport = Date()

    /// Terminal progress unless `quiet` or stderr is not a terminal; JSON events whenever `json`.
    init(quiet: Bool, json: Bool = false) {
        mode = json ? .json : (!quiet && isatty(STDERR_FILENO) != 0 ? .terminal : .off)
    }

    func update(_ p: AnalysisProgress) {
        guard mode != .off else { return }
        let now = Date()
        if p.stage != stage {
            stage = p.stage
            stageStart = lastReport
        }
        lastReport = now
        let interval = mode == .json ? 1.0 : 0.2
        guard now.timeIntervalSince(lastDraw) > interval || p.completed == p.total else { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(stageStart)
        let rate = elapsed > 0 ? Double(p.bytes) / elapsed / 1e6 : 0
        let eta = p.completed > 0 ? elapsed * Double(p.total - p.completed) / Double(p.completed) : 0
        switch mode {
        case .terminal:
            let line = String(format: "\r%@: %d/%d  %.0f MB/s  ETA %.0fs   ", p.stage, p.completed, p.total, rate, eta)
            FileHandle.standardError.write(Data(line.utf8))
        case .json:
            JSONText.event([
                "event": "progress", "stage": p.stage, "completed": p.completed, "total": p.total,
                "mb_per_s": (rate * 10).rounded() / 10, "eta_s": eta.rounded(),
            ])
        case .off:
            break
        }
    }

    /// Clears the terminal line; in JSON mode reports `done` with the files written.
    func finish(output: String? = nil) {
        switch mode {
        case .terminal: FileHandle.standardError.write(Data("\r\u{1B}[K".utf8))
        case .json: if let output { JSONText.event(["event": "done", "output": output]) }
        case .off: break
        }
    }
}
