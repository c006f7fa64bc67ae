// Orthonormal DCT-II along the rows of row-major panels (tokens × channels), through FFTW's real FFT on
// channel-major signals (Makhoul 1980), split over the cores: per-frequency energies for the frequency pass,
// coefficients for tests.
internal import CFFTW
internal import CKernels
import Foundation

/// Orthonormal DCT-II of the columns of row-major `length × count` panels (sample t of column c at
/// `t * count + c`: a window of token rows, whose columns are channels).
///
/// Maths (Makhoul 1980; `Sources/CKernels/include/DCTKernels.h`): a signal x_0 … x_{N−1} is reordered to
/// v = [x_0, x_2, x_4, …, x_5, x_3, x_1]; V = rFFT(v); REDFT10's y_k = 2 Σ_t x_t cos(πk(t + ½)/N) is
/// 2 Re(e^{−iπk/(2N)} V_k), with V_k = conj(V_{N−k}) for k > N/2. Orthonormal scaling: ŷ_0 = y_0·√(1/(4N)),
/// ŷ_k = y_k·√(1/(2N)), so Σ_k ŷ_k² = Σ_t x_t² (Parseval), which energy fractions need.
///
/// Execution: the columns are cut into chunks of `chunkSignals`; P = min(cores, chunks) pieces (one for small
/// panels) each take a contiguous run of whole chunks (`DispatchQueue.concurrentPerform`). For each chunk a
/// piece gathers the columns into channel-major signals in Makhoul order (`kv_dct_gather`: blocked 16 × 8
/// register transpose, non-finite values written as 0, largest |x| returned), runs the one FFTW r2c plan of
/// this length on its own buffers (new-array execution, thread-safe), and post-twiddles the spectra into ŷ_k²
/// summed per frequency in its own float64 partial (`kv_dct_energies`). Partials are added in piece order, so
/// a result depends only on the data and the core count (from `timedLength` samples on, also on which
/// placement timed faster: last-bit differences between runs). A chunk whose largest |x| is outside
/// `PowerOfTwoScale.safeRange` is rescaled by its power of two before the FFT and its energies scaled back
/// (exact): the DCT is linear, and chunks are independent.
///
/// Buffers (`workspaceBytes(length:pieces:)`): signal stride s = 2(⌊N/2⌋ + 1) rounded up to 16 floats, so
/// every signal of every piece starts 64-byte aligned like the planned array; per piece (made when a panel
/// first splits into that many) `chunkSignals`·s floats of signals and as many of spectra unless the plan is
/// in place (fftwf_malloc), and N float64 partial energies; 2(⌊N/2⌋ + 1) float twiddles. A chunk of 16
/// signals of 32768 samples is 2 MiB: it stays in a core's L2 from the gather through the in-place FFT to the
/// energies.
///
/// Plans, measured here (AMD EPYC Zen 5, 2 cores, FFTW 3.3.10; r2c of 16 signals per execution, CPU seconds of
/// one thread per 1024 signals, `Benchmarks/dct_fftw_floor.c` and variants):
///
/// | N | ESTIMATE in place | ESTIMATE out of place | MEASURE (best placement) | MEASURE planning |
/// |---|---|---|---|---|
/// | 2048 | 0.0015 | 0.0010 | 0.0010 | 0.2–0.6 s |
/// | 3000 | 0.0086 | 0.0026 | | |
/// | 4096 | 0.0049 | 0.0022 | 0.0020 | 0.3–0.7 s |
/// | 8192 | 0.0099 | 0.0072 | 0.0048 | 0.3–0.9 s |
/// | 16384 | 0.0199 | 0.0177 | 0.0132 | 0.4–1.2 s |
/// | 32768 | 0.0406 | 0.054 | 0.032 | 0.6–1.9 s |
/// | 65536 / 100000 | 0.088 / 0.170 | 0.116 / 0.128 | | |
///
/// FFTW_ESTIMATE picks badly in place for some lengths and out of place for others, so both estimated plans are
/// made and timed (a few ms) and the faster kept. FFTW_MEASURE would save a further 0.002–0.009 s per 1024
/// signals but costs 0.2–1.9 s of planning per length; a 32-layer key/value dump has 64 tensors per window
/// length, so it never repays within a run (at N = 32768: ≤ 0.6 s of one core saved for ≥ 1.2 s spent); the
/// benchmarks' `dct_fftw_floor.c` and `floor.py` measure it. FFTW wisdom kept across runs would recover that
/// saving only from the second run on, for ≤ 2 % of a full analysis, at the cost of a file written by
/// concurrent runs into possibly read-only homes: not kept. Lengths with large prime factors are slow in any
/// FFTW plan (N = 32767 = 7·31·151: 0.68 s per 1024 signals, 17× N = 32768).
///
/// Per 32768 × 1024 panel on one core: gather 0.022 s (memory-bound: 128 MiB read once, rows prefetched),
/// r2c 0.041 s, energies 0.008 s; the chunk stays in L2 throughout, which is why the whole is about as fast
/// as FFTW_MEASURE's r2c over the same signals stored contiguously (0.072 s on one core).
public final class DCTPlan: @unchecked Sendable {
    // @unchecked Sendable: the FFTW plan and twiddles are immutable after creation and fftwf_execute_dft_r2c
    // with new arrays is thread-safe; `workspaces` is read, grown and used only while `busy` is held (one call
    // at a time per plan), and inside a call each piece touches only its own workspace.
    // `minimumPieceFloats` is set by tests before any call.
    private let plan: fftwf_plan
    private let twiddles: UnsafeMutablePointer<Float>
    private let busy = NSLock()

    /// One piece's memory: its gathered signals (`chunkSignals` × `stride` floats), where r2c writes their
    /// spectra (the same buffer when the plan is in place, a second one of the same size otherwise), and its
    /// `length` float64 partial energies.
    fileprivate struct Workspace {
        let signals: UnsafeMutablePointer<Float>
        let spectra: UnsafeMutablePointer<Float>
        let partial: UnsafeMutablePointer<Double>
    }

    /// Piece 0's from the start (planning needs it); the others made on first use, while `busy` is held, so
    /// memory follows the pieces a panel actually splits into, not the machine's core count.
    private var workspaces: [Workspace]

    /// Samples per signal (tokens per window).
    public let length: Int
    /// Floats between consecutive signals in a piece's buffer: 2(⌊length/2⌋ + 1) rounded up to 16.
    public let stride: Int
    /// Pieces the columns are split into, at most: the active processor count when the plan was made.
    public let pieces: Int
    /// Whether r2c runs in place (see `init`).
    public let inPlace: Bool

    /// Signals gathered and transformed together by one piece (one FFTW execution).
    public static let chunkSignals = 16

    /// Panel floats below which a piece is not worth a thread (waking one costs about what 2¹⁵ floats take to
    /// transform): small panels run on the calling thread. Tests lower it to split small panels.
    var minimumPieceFloats = 1 << 15

    /// Below this length the out-of-place plan is taken without timing (it measured as fast or faster here),
    /// so that short windows, every test fixture among them, give the same bits on every run.
    public static let timedLength = 2048

    /// FFTW's planner is not thread-safe: every plan creation and destruction in the process goes through this.
    private static let planLock = NSLock()

    /// Plans `cached(length:)` keeps for the process, least recently used dropped first.
    public static let cacheCapacity = 4

    /// The process's plans, least recently used first, and the lock that guards the list. Plans are shared by
    /// every pass and kind of a run (making one costs milliseconds, as much as transforming a small dump).
    private static let cache = PlanCache()

    /// A plan for signals of `length` samples, made on first use and kept (up to `cacheCapacity` lengths).
    /// Callers that use one plan from several threads are serialised by the plan itself.
    public static func cached(length: Int) -> DCTPlan { cache.plan(length: length) }

    /// Plans the transforms of signals of `length` samples: an r2c plan of `chunkSignals` signals, estimated
    /// (FFTW_ESTIMATE). From `timedLength` samples on, an in-place and an
    /// out-of-place plan are both made and each timed on three executions (a few milliseconds): FFTW_ESTIMATE
    /// picks badly for one or the other depending on the length (see the type's note), so the faster is kept.
    /// `inPlace` forces one placement without timing (tests of both).
    public init(length: Int, inPlace forced: Bool? = nil) {
        precondition(length > 0, "DCTPlan: empty signals")
        self.length = length
        stride = (2 * (length / 2 + 1) + 15) / 16 * 16
        // As many pieces as cores, but no more than BLAS was given: a run told to use one core (`--threads 1`, a
        // `batch --jobs` child) uses one here too.
        pieces = max(1, min(ProcessInfo.processInfo.activeProcessorCount, BLAS.threads))
        let floats = DCTPlan.chunkSignals * stride
        let signals = DCTPlan.buffer(floats)
        let outputs = DCTPlan.buffer(floats)
        twiddles = .allocate(capacity: 2 * (length / 2 + 1))
        kv_dct_twiddles(length, twiddles)
        var n = Int32(length)
        let flags = kv_fftw_estimate()
        let stride32 = Int32(stride)
        func make(_ output: UnsafeMutablePointer<Float>) -> fftwf_plan {
            let out = UnsafeMutableRawPointer(output).assumingMemoryBound(to: fftwf_complex.self)
            DCTPlan.planLock.lock()
            defer { DCTPlan.planLock.unlock() }
            return fftwf_plan_many_dft_r2c(
                1, &n, Int32(DCTPlan.chunkSignals), signals, nil, 1, stride32, out, nil, 1, stride32 / 2, flags)
        }
        func destroy(_ plan: fftwf_plan) {
            DCTPlan.planLock.lock()
            fftwf_destroy_plan(plan)
            DCTPlan.planLock.unlock()
        }
        let outOfPlace = make(outputs)
        var chosen = outOfPlace
        var inPlace = false
        if forced == true {
            destroy(outOfPlace)
            (chosen, inPlace) = (make(signals), true)
        } else if forced == nil && length >= DCTPlan.timedLength {
            let candidate = make(signals)
            func fastest(_ plan: fftwf_plan, _ output: UnsafeMutablePointer<Float>) -> UInt64 {
                let out = UnsafeMutableRawPointer(output).assumingMemoryBound(to: fftwf_complex.self)
                signals.update(repeating: 0, count: floats)
                fftwf_execute_dft_r2c(plan, signals, out)  // warm-up
                return (0..<3).map { _ in
                    let start = DCTPlan.threadTime()
                    fftwf_execute_dft_r2c(plan, signals, out)
                    return DCTPlan.threadTime() &- start
                }.min()!
            }
            if fastest(candidate, signals) < fastest(outOfPlace, outputs) { (chosen, inPlace) = (candidate, true) }
            destroy(inPlace ? outOfPlace : candidate)
        }
        if inPlace { fftwf_free(outputs) }
        signals.update(repeating: 0, count: floats)  // timing and measuring wrote into it
        plan = chosen
        self.inPlace = inPlace
        let partial = UnsafeMutablePointer<Double>.allocate(capacity: length)
        partial.initialize(repeating: 0, count: length)
        workspaces = [Workspace(signals: signals, spectra: inPlace ? signals : outputs, partial: partial)]
    }

    deinit {
        DCTPlan.planLock.lock()
        fftwf_destroy_plan(plan)
        DCTPlan.planLock.unlock()
        for w in workspaces {
            fftwf_free(w.signals)
            if !inPlace { fftwf_free(w.spectra) }
            w.partial.deallocate()
        }
        twiddles.deallocate()
    }

    /// `floats` zeroed floats from fftwf_malloc: SIMD-aligned, the same alignment for every piece, as
    /// new-array execution requires. A failed allocation stops the run: the analysis's memory estimate (exit
    /// 69) has already refused windows whose buffers could not be allocated, or whose length exceeds Int32.
    private static func buffer(_ floats: Int) -> UnsafeMutablePointer<Float> {
        let p = fftwf_malloc(MemoryLayout<Float>.stride * floats)!.bindMemory(to: Float.self, capacity: floats)
        p.initialize(repeating: 0, count: floats)
        return p
    }

    /// The workspaces of pieces 0 ..< `used`, making the missing ones; `busy` must be held.
    private func workspaces(_ used: Int) -> [Workspace] {
        while workspaces.count < used {
            let signals = DCTPlan.buffer(DCTPlan.chunkSignals * stride)
            let partial = UnsafeMutablePointer<Double>.allocate(capacity: length)
            partial.initialize(repeating: 0, count: length)
            let spectra = inPlace ? signals : DCTPlan.buffer(DCTPlan.chunkSignals * stride)
            workspaces.append(Workspace(signals: signals, spectra: spectra, partial: partial))
        }
        return Array(workspaces[0..<used])
    }

    /// CPU time of the calling thread in nanoseconds (timings not disturbed by other processes' turns).
    private static func threadTime() -> UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t)
        return UInt64(t.tv_sec) &* 1_000_000_000 &+ UInt64(t.tv_nsec)
    }

    /// Bytes a plan of signals of `length` samples allocates on a machine with `pieces` cores: per piece two
    /// buffers of `chunkSignals` × `stride` floats (both exist while the plan is made) and `length` float64
    /// partials; the twiddles; 16·length for FFTW's own plan (its twiddle tables and buffers hold O(length)
    /// floats). Saturating.
    public static func workspaceBytes(length: Int, pieces: Int) -> Int {
        let n = max(length, 0)
        let stride = n / 2 + 1 > Int.max / 64 ? Int.max : (2 * (n / 2 + 1) + 15) / 16 * 16
        func product(_ a: Int, _ b: Int) -> Int { a.multipliedReportingOverflow(by: b).overflow ? Int.max : a * b }
        func sum(_ a: Int, _ b: Int) -> Int { a.addingReportingOverflow(b).overflow ? Int.max : a + b }
        let perPiece = sum(product(8 * chunkSignals, stride), product(8, n))  // signals, spectra, partials
        return sum(sum(product(max(pieces, 1), perPiece), product(4, stride)), product(16, n))
    }

    /// Adds, for every frequency k, Σ over the panel's `count` columns of ŷ_k² (orthonormal DCT-II along its
    /// rows) into `energy[k]` (float64; `energy.count ≥ length`). `panel` is row-major `length × count`;
    /// NaN and ±Inf count as 0. Each signal's squares are formed in float32 from the float32 FFT and summed
    /// in float64.
    public func addEnergies(
        of panel: UnsafeBufferPointer<Float>, count: Int, into energy: UnsafeMutableBufferPointer<Double>
    ) {
        precondition(count > 0 && panel.count >= length * count && energy.count >= length)
        busy.lock()
        defer { busy.unlock() }
        let used = workspaces(piecesUsed(count: count))
        for w in used { w.partial.update(repeating: 0, count: length) }
        run(count: count, on: used) { w, column, signals in
            // The chunk's largest finite |x| decides its rescaling (exact powers of two).
            let largest = kv_dct_gather(
                panel.baseAddress!, self.length, count, column, signals, w.signals, self.stride)
            let scale = PowerOfTwoScale(maxMagnitude: largest)
            if !scale.isIdentity { kv_dct_scale(w.signals, self.length, signals, self.stride, scale.factor) }
            self.execute(w, signals: signals)
            kv_dct_energies(
                w.spectra, self.length, signals, self.stride, self.twiddles, scale.undo(power: 2), w.partial)
        }
        for w in used {
            for k in 0..<length { energy[k] += w.partial[k] }
        }
    }

    /// The orthonormal DCT-II coefficients of the panel's columns: `output` (row-major `length × count`) row k
    /// holds frequency k of every column. NaN and ±Inf inputs count as 0; no rescaling (coefficients of
    /// values near float32's limits may overflow or lose precision). `input` and `output` may be the same buffer.
    public func transform(
        _ input: UnsafeBufferPointer<Float>, count: Int, into output: UnsafeMutableBufferPointer<Float>
    ) {
        precondition(count > 0 && input.count >= length * count && output.count >= length * count)
        busy.lock()
        defer { busy.unlock() }
        run(count: count, on: workspaces(piecesUsed(count: count))) { w, column, signals in
            _ = kv_dct_gather(input.baseAddress!, self.length, count, column, signals, w.signals, self.stride)
            self.execute(w, signals: signals)
            kv_dct_coefficients(
                w.spectra, self.length, signals, self.stride, self.twiddles, output.baseAddress! + column, count)
        }
    }

    /// r2c of the `chunkSignals` signals of `w` into its spectra. Lanes past `signals` (a short last chunk) are
    /// zeroed first: an in-place plan would otherwise transform the previous chunk's spectra again, which grow
    /// towards ±Inf over repeated executions (harmless, as they are never read, but not finite work).
    private func execute(_ w: Workspace, signals: Int) {
        if signals < DCTPlan.chunkSignals {
            (w.signals + signals * stride).update(repeating: 0, count: (DCTPlan.chunkSignals - signals) * stride)
        }
        let complex = UnsafeMutableRawPointer(w.spectra).assumingMemoryBound(to: fftwf_complex.self)
        fftwf_execute_dft_r2c(plan, w.signals, complex)
    }

    /// Pieces a panel of `count` columns is split into: one per core, at most one per chunk, and one only for
    /// panels under `minimumPieceFloats` per piece.
    private func piecesUsed(count: Int) -> Int {
        let chunks = (count + DCTPlan.chunkSignals - 1) / DCTPlan.chunkSignals
        return max(1, min(pieces, chunks, length * count / max(minimumPieceFloats, 1)))
    }

    /// Splits the chunks of `count` columns over the pieces of `workspaces`, each a contiguous run of chunks,
    /// and runs `body(workspace, first column, signals)` for each chunk of each piece.
    private func run(count: Int, on workspaces: [Workspace], body: (Workspace, Int, Int) -> Void) {
        let chunks = (count + DCTPlan.chunkSignals - 1) / DCTPlan.chunkSignals
        let used = workspaces.count
        // @unchecked Sendable: concurrentPerform returns only after every piece has finished, the closure
        // outlives no call, and each piece works on its own workspace and columns of the output.
        struct Work: @unchecked Sendable {
            let body: (Workspace, Int, Int) -> Void
            let workspaces: [Workspace]
        }
        withoutActuallyEscaping(body) { body in
            let work = Work(body: body, workspaces: workspaces)
            let perform: @Sendable (Int) -> Void = { piece in
                for chunk in (chunks * piece / used)..<(chunks * (piece + 1) / used) {
                    let column = chunk * DCTPlan.chunkSignals
                    work.body(work.workspaces[piece], column, min(DCTPlan.chunkSignals, count - column))
                }
            }
            if used == 1 {
                perform(0)
            } else {
                DispatchQueue.concurrentPerform(iterations: used, execute: perform)
            }
        }
    }
}

/// The shared plans of `DCTPlan.cached(length:)`.
private final class PlanCache: @unchecked Sendable {
    // @unchecked Sendable: `plans` is read and written only while `lock` is held.
    private let lock = NSLock()
    private var plans: [DCTPlan] = []

    func plan(length: Int) -> DCTPlan {
        lock.lock()
        defer { lock.unlock() }
        if let i = plans.firstIndex(where: { $0.length == length }) {
            let p = plans.remove(at: i)
            plans.append(p)
            return p
        }
        if plans.count >= DCTPlan.cacheCapacity { plans.removeFirst() }
        let p = DCTPlan(length: length)
        plans.append(p)
        return p
    }
}
