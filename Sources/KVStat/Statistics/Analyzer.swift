// The streaming passes of `kvstat analyze`: one pass over token blocks (all layers of a kind in lockstep, so
// each block of layer l meets the same tokens of the layers it is paired with) and, for frequency, one
// pass over sequence windows. Every block is folded into accumulators and dropped.
import Foundation
import KVNumerics

public enum Analyzer {
    /// Reads `dump` and returns the filled accumulators; wall time per stage goes to `timings`. With
    /// `digest` (the default) the file's SHA-256 is computed on a second thread during the passes (about 2.5 s
    /// of one core per 4 GiB with SHA-NI); without it `sources[0].sha256` stays nil.
    public static func accumulate(
        _ dump: Dump, options: AnalysisOptions, timings: StageTimings = StageTimings(),
        digest computeDigest: Bool = true, progress: ((AnalysisProgress) -> Void)? = nil
    ) throws -> AnalysisState {
        let layers = try dump.selectLayers(options.layers)
        let needsPairs = options.sections.contains(.similarity)
        let runs = try options.selection.runs(of: dump)
        // Refuse a run that cannot fit before allocating anything sized by the dump (exit 69).
        let pairCount =
            !needsPairs || layers.count < 2
            ? 0
            : options.pairs == .adjacent ? layers.count - 1 : Bytes.product(layers.count, layers.count - 1) / 2
        try MemoryEstimate.analysis(dump: dump, options: options, layers: layers.count, pairs: pairCount, runs: runs)
            .check(file: dump.path)
        var pairs: [(Int, Int)] = []
        if needsPairs {
            switch options.pairs {
            case .adjacent: pairs = layers.indices.dropLast().map { ($0, $0 + 1) }
            case .all: pairs = layers.indices.flatMap { a in (a + 1..<layers.count).map { (a, $0) } }
            }
        }
        var state = AnalysisState(
            options: options, layers: layers, kinds: [:], pairs: pairs,
            sources: [options.selection.summary(of: dump, runs: runs)])
        let plan = BlockPlan(runs: runs, blockTokens: options.blockTokens)
        // The file's SHA-256 on a second thread while the passes run (it reads the file once more, mostly
        // from the page cache the passes fill).
        let digest = computeDigest ? DigestTask(dump) : nil
        for kind in dump.kinds {
            let channels = dump.shape.heads(of: kind) * dump.shape.headDim
            let shape = LayerShape(channels: channels, headDim: dump.shape.headDim)
            let kindPairs = (kind == .key || kind == .value || kind == .keyPreRope) ? pairs : []
            var kindState = AnalysisState.KindState(
                shape: shape, layers: layers.map { _ in LayerStatistics(shape: shape, options: options) },
                cross: kindPairs.map {
                    CrossLayerAccumulator(layerA: layers[$0.0], layerB: layers[$0.1], channels: channels)
                })
            // `--xkv-groups G`: each group of G consecutive layers' Gram, their channels side by side.
            let groupPositions =
                options.xkvGroupSize.flatMap { AnalysisState.hasXKVGroups(kind) ? $0 : nil }
                .map { XKVGrouping.groups(Array(layers.indices), size: $0) } ?? []
            var groupFolder = groupPositions.isEmpty ? nil : XKVGroupFolder(groups: groupPositions, channels: channels)
            let excluded = try blockPass(
                dump, kind: kind, layers: layers, plan: plan, pairs: kindPairs, options: options, state: &kindState,
                groups: &groupFolder, timings: timings, progress: progress)
            kindState.xkvGroups = groupFolder?.grams ?? []
            if options.sections.contains(.frequency) {
                try frequencyPass(
                    dump, runs: runs, kind: kind, layers: layers, options: options, excluded: excluded,
                    state: &kindState,
                    timings: timings, progress: progress)
            }
            state.kinds[kind] = kindState
        }
        // Attention-mass sinks (dumps with queries): two passes over each layer's keys per sequence.
        if AttentionMass.isComputed(by: options) {
            state.attentionMass = try timings.measure("sinks") {
                try AttentionMass.measure(
                    dump, runs: runs, layers: layers, queriesPerSequence: options.sinkQueries, causal: options.causal,
                    blockTokens: options.blockTokens)
            }
        }
        if let digest { state.sources[0].sha256 = try timings.measure("sha256") { try digest.result() } }
        return state
    }

    /// Token-block-major pass: for each block, every layer in turn; a layer's block is kept while a later
    /// layer it is paired with is folded (one previous block for adjacent pairs, all for `--all-pairs`).
    /// Returns, per layer, the (sequence → token positions) of the rows excluded for NaN/±Inf, for the DCT pass.
    @discardableResult
    static func blockPass(
        _ dump: Dump, kind: TensorKind, layers: [Int], plan: BlockPlan, pairs: [(Int, Int)],
        options: AnalysisOptions, state: inout AnalysisState.KindState, groups: inout XKVGroupFolder?,
        timings: StageTimings, progress: ((AnalysisProgress) -> Void)?
    ) throws -> [[Int: Set<Int>]] {
        var excludedPositions = [[Int: Set<Int>]](repeating: [:], count: layers.count)
        let scratch = ReadScratch()
        let readers = try layers.map { layer throws(DumpError) in
            try TensorReader(dump: dump, layer: layer, kind: kind, scratch: scratch)
        }
        // Pairs by their later layer: when layer b's block is read, fold each (a, b) with a's kept block.
        var partners: [Int: [(pair: Int, a: Int)]] = [:]
        for (i, p) in pairs.enumerated() { partners[p.1, default: []].append((i, p.0)) }
        let keepAll = pairs.contains { $0.1 - $0.0 > 1 }
        var buffers = [[Float]](repeating: [], count: keepAll ? layers.count : min(layers.count, 2))
        var blockInfo = [(rows: Int, excluded: [Int], nonFinite: Int)](repeating: (0, [], 0), count: buffers.count)
        let columns = readers.first.map { $0.heads * $0.headDim } ?? 0
        let foldScratch = FoldScratch()  // one channels² block product, shared by every layer and pair
        var bytes = 0
        for blockIndex in plan.blocks.indices {
            for (li, reader) in readers.enumerated() {
                let slot = keepAll ? li : li % 2
                let start = DispatchTime.now().uptimeNanoseconds
                var folding = 0.0
                try plan.read(blockIndex, from: reader, into: &buffers[slot]) { block in
                    let foldStart = DispatchTime.now().uptimeNanoseconds
                    state.layers[li].fold(block, scratch: foldScratch, timings: timings)
                    if groups != nil {
                        // rows · G·C · C per layer: the group's SSYRK, rows · (G·C)², over its G layers.
                        let width = Double(block.columns * (groups!.groups.first?.count ?? 1))
                        timings.measure("xkv groups", flops: Double(block.rows) * width * Double(block.columns)) {
                            groups!.add(block, layer: li)
                        }
                    }
                    folding = Double(DispatchTime.now().uptimeNanoseconds - foldStart) / 1e9
                    if !block.excludedRows.isEmpty {
                        let excludedSet = Set(block.excludedRows)
                        var row = 0
                        for run in block.runs {
                            for i in 0..<run.count where excludedSet.contains(row + i) {
                                excludedPositions[li][run.sequence, default: []].insert(run.start + i)
                            }
                            row += run.count
                        }
                    }
                    blockInfo[slot] = (block.rows, block.excludedRows, block.nonFiniteValues)
                    bytes += block.rows * block.columns * 4
                }
                timings.add("read", seconds: Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 - folding)
                for (pairIndex, a) in partners[li] ?? [] {
                    let other = keepAll ? a : a % 2
                    let info = blockInfo[slot]
                    let otherInfo = blockInfo[other]
                    let runs = plan.pieces(of: blockIndex)
                    buffers[other].withUnsafeBufferPointer { pa in
                        buffers[slot].withUnsafeBufferPointer { pb in
                            let blockA = TokenBlock(
                                rows: otherInfo.rows, columns: columns,
                                values: UnsafeBufferPointer(rebasing: pa[0..<(otherInfo.rows * columns)]),
                                runs: runs, excludedRows: otherInfo.excluded, nonFiniteValues: otherInfo.nonFinite)
                            let blockB = TokenBlock(
                                rows: info.rows, columns: columns,
                                values: UnsafeBufferPointer(rebasing: pb[0..<(info.rows * columns)]),
                                runs: runs, excludedRows: info.excluded, nonFiniteValues: info.nonFinite)
                            timings.measure("cross", flops: Double(2 * info.rows * columns * columns)) {
                                state.cross[pairIndex].fold(blockA, blockB, scratch: &foldScratch.product)
                            }
                        }
                    }
                }
            }
            progress?(
                AnalysisProgress(stage: kind.plural, completed: blockIndex + 1, total: plan.blocks.count, bytes: bytes))
        }
        return excludedPositions
    }

    /// Sequence-window pass for the DCT: each window of each sequence, read as panels of as many heads as fit
    /// `frequencyPanelBytes`, whose energies per DCT frequency (`DCTPlan.addEnergies`: r2c on all cores,
    /// non-finite values as 0, out-of-range chunks rescaled by powers of two) are summed over the window's
    /// panels and folded once per window. Plans are shared by every kind and run (`DCTPlan.cached(length:)`).
    /// `excluded[li]`: sequence → token positions the block pass excluded for NaN/±Inf in layer `li` (whole rows:
    /// a panel holds only some heads, so it cannot see a non-finite value in another head of the same token).
    static func frequencyPass(
        _ dump: Dump, runs selected: TokenRuns, kind: TensorKind, layers: [Int], options: AnalysisOptions,
        excluded: [[Int: Set<Int>]], state: inout AnalysisState.KindState, timings: StageTimings,
        progress: ((AnalysisProgress) -> Void)?
    ) throws {
        let heads = dump.shape.heads(of: kind)
        let headDim = dump.shape.headDim
        var panel: [Float] = []
        var perFrequency: [Double] = []
        // Valid tokens of each sequence, as its runs; a window is a slice of that concatenation.
        var runsBySequence = [[TokenRun]](repeating: [], count: dump.shape.sequences)
        for run in selected.runs { runsBySequence[run.sequence].append(run) }
        let scratch = ReadScratch()
        var bytes = 0
        // Windows are visited length by length (every sequence's windows of one length, then the next length), so
        // that `DCTPlan.cached` makes each length's plan once per layer however many lengths the dump has.
        let lengths = runsBySequence.map { $0.reduce(0) { $0 + $1.count } }
        let windows = lengths.map { min(options.dctWindow ?? $0, $0) }
        var windowLengths = Set<Int>()
        for (length, window) in zip(lengths, windows) where window > 0 {
            windowLengths.insert(window)
            if length % window > 0 { windowLengths.insert(length % window) }
        }
        for (li, layer) in layers.enumerated() {
            let reader = try TensorReader(dump: dump, layer: layer, kind: kind, scratch: scratch)
            for n in windowLengths.sorted() {
                let dct = timings.measure("dct") { DCTPlan.cached(length: n) }
                for (sequence, runs) in runsBySequence.enumerated() where windows[sequence] > 0 {
                    let (length, window) = (lengths[sequence], windows[sequence])
                    // Windows of n tokens in this sequence: its full windows, or its shorter last one.
                    let full = length / window * window
                    let starts =
                        n == window
                        ? stride(from: 0, to: full, by: window)
                        : stride(from: full, to: length - full == n ? full + 1 : full, by: 1)
                    let headsPerPanel = max(1, min(heads, options.frequencyPanelBytes / max(window * headDim * 4, 1)))
                    for windowStart in starts {
                        if perFrequency.count < n { perFrequency = [Double](repeating: 0, count: n) }
                        for k in 0..<n { perFrequency[k] = 0 }
                        for h0 in stride(from: 0, to: heads, by: headsPerPanel) {
                            let headRange = h0..<min(h0 + headsPerPanel, heads)
                            let count = headRange.count * headDim
                            if panel.count < n * count { panel = [Float](repeating: 0, count: n * count) }
                            // Copy the window's tokens, which may span several runs of the sequence.
                            let readStart = DispatchTime.now().uptimeNanoseconds
                            var offset = 0
                            var row = 0
                            let excludedHere = excluded[li][sequence]
                            for run in runs {
                                let lo = max(windowStart - offset, 0)
                                let hi = min(windowStart + n - offset, run.count)
                                if lo < hi {
                                    try panel.withUnsafeMutableBufferPointer { out throws(DumpError) in
                                        try reader.read(
                                            sequence: sequence, start: run.start + lo, count: hi - lo, heads: headRange,
                                            into: out, row: row)
                                        // Rows the block pass excluded are zeroed whole, as in every other statistic.
                                        guard let excludedHere else { return }
                                        for position in (run.start + lo)..<(run.start + hi)
                                        where excludedHere.contains(position) {
                                            let zeroed = row + position - run.start - lo
                                            out[(zeroed * count)..<((zeroed + 1) * count)].update(repeating: 0)
                                        }
                                    }
                                    row += hi - lo
                                }
                                offset += run.count
                            }
                            timings.add("read", seconds: Double(DispatchTime.now().uptimeNanoseconds - readStart) / 1e9)
                            timings.measure("dct") {
                                panel.withUnsafeBufferPointer { values in
                                    perFrequency.withUnsafeMutableBufferPointer { energy in
                                        dct.addEnergies(
                                            of: UnsafeBufferPointer(rebasing: values[0..<(n * count)]), count: count,
                                            into: UnsafeMutableBufferPointer(rebasing: energy[0..<n]))
                                    }
                                }
                            }
                            bytes += n * count * 4
                        }
                        timings.measure("dct") {
                            perFrequency.withUnsafeBufferPointer { energy in
                                state.layers[li].modify(FrequencyEnergy.self) {
                                    $0.fold(perFrequency: UnsafeBufferPointer(rebasing: energy[0..<n]))
                                }
                            }
                        }
                    }
                }
            }
            progress?(
                AnalysisProgress(
                    stage: "\(kind.rawValue) frequency", completed: li + 1, total: layers.count, bytes: bytes))
        }
    }
}

/// A file's SHA-256 computed on a background thread; `result()` waits for it.
private final class DigestTask: @unchecked Sendable {
    // @unchecked Sendable: `outcome` is written once by the worker before `done` is signalled and read
    // only after waiting on `done`.
    private var outcome: Result<String, DumpError> = .failure(DumpError(.notReadable, "not hashed"))
    private let done = DispatchSemaphore(value: 0)

    init(_ dump: Dump) {
        Thread.detachNewThread { [self] in
            do throws(DumpError) {
                outcome = .success(try dump.sha256())
            } catch {
                outcome = .failure(error)
            }
            done.signal()
        }
    }

    func result() throws(DumpError) -> String {
        done.wait()
        return try outcome.get()
    }
}
