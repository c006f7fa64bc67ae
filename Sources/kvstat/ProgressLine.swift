// One self-overwriting progress line on stderr (stage, blocks done, MB/s, ETA), only when stderr is a terminal.
import Foundation
import KVStat

final class ProgressLine: @unchecked Sendable {
    // @unchecked Sendable: used from the analysing thread only.
    private let enabled: Bool
    private var stageStart = Date()
    private var stage = ""
    private var lastDraw = Date.distantPast

    init(enabled: Bool) {
        self.enabled = enabled && isatty(STDERR_FILENO) != 0
    }

    func update(_ p: AnalysisProgress) {
        guard enabled else { return }
        if p.stage != stage { stage = p.stage; stageStart = Date() }
        let now = Date()
        guard now.timeIntervalSince(lastDraw) > 0.2 || p.completed == p.total else { return }
        lastDraw = now
        let elapsed = now.timeIntervalSince(stageStart)
        let rate = elapsed > 0 ? Double(p.bytes) / elapsed / 1e6 : 0
        let eta = p.completed > 0 ? elapsed * Double(p.total - p.completed) / Double(p.completed) : 0
        let line = String(format: "\r%@: %d/%d  %.0f MB/s  ETA %.0fs   ", p.stage, p.completed, p.total, rate, eta)
        FileHandle.standardError.write(Data(line.utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
