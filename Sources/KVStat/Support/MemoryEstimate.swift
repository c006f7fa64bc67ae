// What a run will allocate, estimated from the dump's declared shapes before anything is allocated, and the
// check against the memory this machine (or its container) can give: a run that cannot fit is refused with one
// line saying the numbers (exit 69), instead of dying of an out-of-memory kill hours in, or on a dump whose
// header declares absurd sizes.
import Foundation
import HDF5Kit
import KVNumerics

/// An estimate of the peak memory of a run, as named parts.
///
/// Notation: for each tensor kind k, C_k = heads_k × head_dim channels; L layers analysed; P layer pairs with
/// cross statistics (L − 1 adjacent, L(L − 1)/2 with `--all-pairs`), for key, value and key_pre_rope only;
/// B = rows per block (`--block-tokens` clipped to the tokens read); all sizes in bytes; sums and products
/// saturate at Int.max, so a declared-absurd shape gives an absurd estimate, never an overflow.
///
/// `kvstat analyze` (`analysis(kinds:…)`):
/// - Gram matrices (held to the end), per kind and layer: 8·C(C+1)/2 (packed XᵀX) + 8·C (column sums).
/// - channel moments, per kind and layer: 36·C (max |x| float32; mean, M2, M3, M4 float64); the position
///   profile: 8·32·(C + 1) (Σ|x| per position bucket and channel, and the bucket counts).
/// - token-norm sketches, per kind and layer: 48·min(T, 1024) (the sparse log histogram's occupied bins, T tokens
///   read, its norms assumed to span at most 16 octaves) + 2·24·64 (largest and smallest norms).
/// - cross-layer products, per paired kind and pair: 8·C².
/// - xKV group Grams (`--xkv-groups G`, held to the end), per paired kind and group of g layers (⌊L/G⌋ groups of
///   G, and one of L mod G when that is not 0): 8·W(W+1)/2 + 8·W with W = g·C; plus, while the block pass runs
///   (one kind at a time), the joined block and its float32 product, 4·B·W + 4·W² with W = min(G, L)·C.
/// - the largest of three stages, one kind at a time:
///   - block pass: (kept + 2.5)·4·B·C + 4·C², kept = L with `--all-pairs` (else min(L, 2)) blocks held, one block
///     of read scratch (float32 plus raw halves) and one rescaled copy, plus the float32 block product;
///   - frequency pass: 2.5 × the DCT panel (the float32 panel, and the read scratch: float32 plus raw halves)
///     + 8·window (the window's energies per frequency) + `keptDCTPlans` × `DCTPlan.workspaceBytes(window,
///     pieces)`, pieces = min(cores, ⌊C_max/16⌋ + 1) (per piece two 16-signal buffers of 4·16·(window + 16)
///     and 8·window of partial energies, the twiddles, 16·window for FFTW's plan), the panel being
///     max(H, min(all heads × H, `frequency_panel_bytes`)) with H = window × head_dim × 4 one head of the
///     longest window (a shorter window packs more heads, up to the budget);
///   - eigen stage: 3·8·C² (the Gram, its centred copy, LAPACK's copy) + 16·C·r (r = min(align rank, C)) +
///     8·C·r per layer of kept alignment bases when similarity is computed.
/// - report: 2 KiB per kind, layer and channel (values, JSON and CSV text), 256 bytes per pair.
/// - attention-mass sinks (dumps with queries, `--sink-queries` > 0): see `attentionSinks(layers:…)`.
/// - readers: the L readers of one kind the block pass holds open, each of which may keep 8 MiB of partly read
///   chunks while libhdf5 keeps its own 8 MiB chunk cache (`readerCacheBytes`; at most 16·S·C, S the tokens
///   the tensor stores, padding included), and the read workers' buffers, at most `readWorkerBytes` between
///   them.
///
/// `kvstat fit-lowrank` (`fit(kinds:…)`),
/// with G = layers per group (xKV; 1 otherwise), W = G·C, and D the channels of one projection (W, or the
/// heads of a unit × head_dim for per-head and matryoshka fits):
/// - Gram matrices: 8·W(W+1)/2 + 8·W per kind for one group at a time; matryoshka holds every layer's; xKV
///   (G > 1) one more, its shuffled-token null (built one kind at a time).
/// - Gram pass: 4·B·C·(G + 1.5) + 4·B·W (the joined block) + 4·W².
/// - eigen stage: 40·W² when D = W (the Gram, its centred copy, LAPACK's copy and workspace), else
///   16·W² + 40·D² (the group's matrix kept while its units' blocks are decomposed).
/// - projections (held to the end): 4·W·r per group and kind, r = min(rank, D) or ⌈keep ratio·D⌉ (D for energy;
///   matryoshka: the widest of the budget and the ladder).
/// - evaluation: 4·B·C·(4·G + 1.5) + 8·B·W (exact and rebuilt blocks, projected input and output).
/// - attention errors (dumps with queries): n·Hq·(4·d + 2·(8·d + 64)) + 8·T, n = min(queries, T), T the
///   longest sequence.
///
/// `kvstat inspect --read-all` (``scan(channels:blockRows:)``): one block with its read scratch, 10·B·C.
public struct MemoryEstimate: Sendable, Equatable, CustomStringConvertible {
    /// One named part of the estimate and what would shrink it.
    public struct Part: Sendable, Equatable {
        public var name: String
        public var bytes: Int
        public var hint: String
    }

    public private(set) var parts: [Part] = []

    public init() {}

    /// DCT plans the frequency pass may hold, one per window length (`DCTPlan.cached(length:)`); the pass visits
    /// windows length by length, so each length is planned once per layer.
    public static let keptDCTPlans = DCTPlan.cacheCapacity

    /// What one open `TensorReader` may keep between reads: its decoded partly read chunks and libhdf5's
    /// chunk cache, `HDF5Dataset.chunkCacheBytes` each.
    public static let readerCacheBytes = 2 * HDF5Dataset.chunkCacheBytes

    /// What the read workers of a chunked read hold at most between them: up to four chunk-sized buffers each
    /// (stored, decoded, libdeflate's intermediate, a piece), the workers capped so that three stay under
    /// `TensorReader.largestDirectChunk` (64 MiB).
    public static let readWorkerBytes = 4 * TensorReader.largestDirectChunk / 3 + (1 << 20)

    /// The DCT plans the frequency pass may hold at once: `keptDCTPlans` × `DCTPlan.workspaceBytes` of the
    /// longest window for `cores` pieces (saturating).
    public static func dctPlanBytes(longestWindow: Int, cores: Int) -> Int {
        Bytes.product(keptDCTPlans, DCTPlan.workspaceBytes(length: longestWindow, pieces: cores))
    }

    /// The estimate: the parts added up (saturating).
    public var total: Int { parts.reduce(0) { Bytes.sum($0, $1.bytes) } }

    /// The bytes of the part named `name` (0 when there is none).
    public func bytes(of name: String) -> Int { parts.first { $0.name == name }?.bytes ?? 0 }

    public mutating func add(_ name: String, _ bytes: Int, hint: String = "") {
        parts.append(Part(name: name, bytes: max(bytes, 0), hint: hint))
    }

    /// `about 12.3 GiB (Gram matrices 8.0 GiB, cross-layer products 4.0 GiB, …)`: the three largest parts.
    public var description: String {
        let largest = parts.filter { $0.bytes > 0 }.sorted { $0.bytes > $1.bytes }
        let shown = largest.prefix(3).map { "\($0.name) \(Bytes.text($0.bytes))" }
        return "about \(Bytes.text(total)) (" + shown.joined(separator: ", ") + (largest.count > 3 ? ", …" : "") + ")"
    }

    /// Throws `DumpError(.tooLarge)` (exit 69) when the estimate exceeds `available` bytes (nil: unknown, no
    /// check). The message gives the estimate, its largest parts, the memory available and what to change.
    public func check(file: String?, available: Int? = MemoryLimit.current().bytes) throws(DumpError) {
        guard let available, total > available else { return }
        // What to change: the hints of the parts that make up at least a tenth of the total.
        let hints = parts.filter { $0.bytes >= total / 10 && !$0.hint.isEmpty }.sorted { $0.bytes > $1.bytes }.prefix(2)
            .map(\.hint)
        var seen: Set<String> = []
        let advice = hints.filter { seen.insert($0).inserted }.joined(separator: "; ")
        throw DumpError(
            .tooLarge,
            "needs \(description), this machine has \(Bytes.text(available)) available"
                + (advice.isEmpty ? "" : "; \(advice)"), file: file)
    }

    // MARK: analyze

    /// One tensor kind's channels as the estimates see them.
    public struct KindShape: Sendable, Equatable {
        public var channels: Int
        public var heads: Int
        /// Whether the kind gets cross-layer statistics (key, value, key_pre_rope).
        public var paired: Bool

        public init(channels: Int, heads: Int, paired: Bool) {
            (self.channels, self.heads, self.paired) = (channels, heads, paired)
        }
    }

    /// `kvstat analyze` of `dump` (see the type's documentation for the formulas).
    public static func analysis(
        dump: Dump, options: AnalysisOptions, layers: Int, pairs: Int, runs: TokenRuns
    ) -> MemoryEstimate {
        let kinds = dump.kinds.map { kind in
            KindShape(
                channels: Bytes.product(dump.shape.heads(of: kind), dump.shape.headDim),
                heads: dump.shape.heads(of: kind),
                paired: kind == .key || kind == .value || kind == .keyPreRope)
        }
        let longest = runs.lengths.max() ?? 0
        let window = min(options.dctWindow ?? longest, longest)
        let rows = min(options.blockTokens, max(runs.totalTokens, 1))
        let kept = options.pairs == .all && layers > 2 ? layers : min(layers, 2)
        var e = analysis(
            kinds: kinds, layers: layers, pairs: pairs, tokens: runs.totalTokens, blockRows: rows, keptBlocks: kept,
            sections: options.sections,
            longestWindow: window, frequencyPanelBytes: options.frequencyPanelBytes, alignRank: options.alignRank,
            headDim: dump.shape.headDim, storedTokens: Bytes.product(dump.shape.sequences, dump.shape.maxTokens),
            xkvGroupSize: options.xkvGroupSize)
        if AttentionMass.isComputed(by: options), let hq = dump.shape.queryHeads, dump.kinds.contains(.query) {
            e.add(
                "attention-mass sinks",
                attentionSinks(
                    layers: layers, positions: dump.shape.maxTokens, queryHeads: hq, kvHeads: dump.shape.kvHeads,
                    headDim: dump.shape.headDim, queries: options.sinkQueries, blockRows: rows),
                hint: "use a smaller --sink-queries (0: none), or select fewer --layers")
        }
        return e
    }

    /// The attention-mass sinks (`AttentionMass`): L·(64·k + 32·Hq) held to the end (per layer its k = `topCount`
    /// top positions and each query head's top position), plus while a layer is measured 8·T·(Hq + 6) (per query
    /// head a float64 per key position, and per position the uniform share, two norm sums and two counts, then
    /// the shares) and while a sequence is measured n·Hq·(12·d + 16) (its sampled queries as float32 and float64,
    /// the softmax maxima and sums), B·(8·C + 8·d) (a block of keys and of values, one KV head's keys as
    /// float64) and 8·n·(Hq/Hkv)·B (the logits of one KV head), with T the longest stored sequence,
    /// n = min(queries, T), C = Hkv·d.
    static func attentionSinks(
        layers: Int, positions: Int, queryHeads: Int, kvHeads: Int, headDim: Int, queries: Int, blockRows: Int
    ) -> Int {
        let n = min(max(queries, 0), positions)
        let kept = Bytes.product(layers, Bytes.sum(64 * AttentionMass.topCount, Bytes.product(32, queryHeads)))
        let held = Bytes.sum(kept, Bytes.product(8, positions, Bytes.sum(queryHeads, 6)))
        let sampled = Bytes.product(n, queryHeads, Bytes.sum(Bytes.product(12, headDim), 16))
        let block = Bytes.product(blockRows, Bytes.sum(Bytes.product(8, kvHeads, headDim), Bytes.product(8, headDim)))
        let logits = Bytes.product(8, n, max(queryHeads / max(kvHeads, 1), 1), blockRows)
        return Bytes.sum(Bytes.sum(held, sampled), Bytes.sum(block, logits))
    }

    /// `kvstat analyze` from shapes alone (see the type's documentation for the formulas).
    public static func analysis(
        kinds: [KindShape], layers: Int, pairs: Int, tokens: Int, blockRows: Int, keptBlocks: Int,
        sections: Set<AnalysisSection>, longestWindow: Int, frequencyPanelBytes: Int, alignRank: Int,
        headDim: Int, storedTokens: Int = Int.max,
        cores: Int = min(ProcessInfo.processInfo.activeProcessorCount, BLAS.threads), xkvGroupSize: Int? = nil
    ) -> MemoryEstimate {
        var e = MemoryEstimate()
        let L = layers
        var xkvGrams = 0
        var xkvPass = 0
        let B = blockRows
        let similarity = sections.contains(.similarity)
        var gram = 0
        var moments = 0
        var sketches = 0
        var cross = 0
        var report = 0
        var blockPass = 0
        var frequency = 0
        var eigen = 0
        let sketch = Bytes.sum(Bytes.product(48, min(max(tokens, 0), 1024)), 2 * 24 * 64)
        for kind in kinds {
            let C = kind.channels
            let packed = Bytes.sum(Bytes.product(8, C, Bytes.sum(C, 1)) / 2, Bytes.product(8, C))
            // Only what the sections compute: Grams for spectra or similarity, moments and sketches for outliers.
            if sections.contains(.spectra) || similarity { gram = Bytes.sum(gram, Bytes.product(L, packed)) }
            if sections.contains(.outliers) {
                moments = Bytes.sum(
                    moments, Bytes.product(L, 36, C), Bytes.product(L, 8 * PositionProfile.bucketCount, C + 1))
                sketches = Bytes.sum(sketches, Bytes.product(L, sketch))
            }
            report = Bytes.sum(report, Bytes.product(L, C, 2048))
            if similarity && kind.paired {
                cross = Bytes.sum(cross, Bytes.product(pairs, 8, C, C))
            }
            // xKV group Grams: ⌊L/G⌋ groups of G layers and one of L mod G, each a packed (g·C)² Gram and sums.
            if let G = xkvGroupSize, G >= 1, kind.paired {
                let packed = { (w: Int) in Bytes.sum(Bytes.product(8, w, Bytes.sum(w, 1)) / 2, Bytes.product(8, w)) }
                let W = Bytes.product(min(G, L), C)
                xkvGrams = Bytes.sum(
                    xkvGrams, Bytes.product(L / G, packed(W)), L % G > 0 ? packed(Bytes.product(L % G, C)) : 0)
                xkvPass = max(xkvPass, Bytes.sum(Bytes.product(4, B, W), Bytes.product(4, W, W)))
            }
            // Block pass: kept blocks + read scratch (1.5 blocks) + a rescaled copy (1 block), and the product.
            let block = Bytes.product(4, B, C)
            blockPass = max(
                blockPass,
                Bytes.sum(Bytes.product(keptBlocks, block), Bytes.product(5, block) / 2, Bytes.product(4, C, C)))
            if sections.contains(.frequency) && longestWindow > 0 {
                // A shorter window packs more heads: a panel is at most the budget (or all heads, when they fit
                // in it), or one head of the longest window when that alone is larger.
                let perHead = Bytes.product(longestWindow, headDim, 4)
                let panel = max(perHead, min(Bytes.product(perHead, kind.heads), frequencyPanelBytes))
                // Pieces beyond a panel's chunks of 16 channels get no workspace; plans serve every kind.
                let widest = kinds.map(\.channels).max() ?? 0
                let plans = dctPlanBytes(longestWindow: longestWindow, cores: min(max(cores, 1), widest / 16 + 1))
                frequency = max(
                    frequency, Bytes.sum(Bytes.product(5, panel) / 2, Bytes.product(8, longestWindow), plans))
            }
            if sections.contains(.spectra) || similarity {
                let r = min(max(alignRank, 0), C)
                var stage = Bytes.sum(Bytes.product(24, C, C), Bytes.product(16, C, r))
                if similarity { stage = Bytes.sum(stage, Bytes.product(L, 8, C, r)) }
                eigen = max(eigen, stage)
            }
        }
        report = Bytes.sum(report, Bytes.product(pairs, 256))
        // The block pass opens the L readers of one kind at once (the frequency pass one at a time). A reader
        // caches no more than its tensor: twice its stored tokens × channels × 8 bytes (float64 at most).
        let widestKind = kinds.map(\.channels).max() ?? 0
        let perReader = min(readerCacheBytes, Bytes.product(16, storedTokens, widestKind))
        e.add("readers", Bytes.sum(Bytes.product(L, perReader), readWorkerBytes), hint: "select fewer --layers")
        e.add("Gram matrices", gram, hint: "select fewer --layers")
        e.add("channel moments", moments, hint: "select fewer --layers")
        e.add("token-norm sketches", sketches, hint: "select fewer --layers")
        e.add(
            "cross-layer products", cross,
            hint: "drop --all-pairs, select fewer --layers, or leave similarity out of --only")
        e.add(
            "xKV group Grams", Bytes.sum(xkvGrams, xkvPass),
            hint: "use a smaller --xkv-groups, or select fewer --layers")
        let stages = [
            ("block buffers", blockPass, "use a smaller --block-tokens"),
            ("DCT panel", frequency, "use a smaller --dct-window, or leave frequency out of --only"),
            ("eigen stage", eigen, ""),
        ]
        let largest = stages.max { $0.1 < $1.1 }!
        e.add(largest.0, largest.1, hint: largest.2)
        e.add("report", report, hint: "select fewer --layers")
        return e
    }

    // MARK: fit-lowrank

    /// `kvstat fit-lowrank` of `dump` with `options` over `layers` layers; `eval` is another dump evaluated too.
    public static func fit(
        dump: Dump, options: FitOptions, layers: Int, runs: TokenRuns, eval: Dump? = nil
    ) -> MemoryEstimate {
        let kinds = LowRankFit.kinds.filter(dump.kinds.contains).map { kind in
            KindShape(
                channels: Bytes.product(dump.shape.heads(of: kind), dump.shape.headDim),
                heads: dump.shape.heads(of: kind),
                paired: false)
        }
        let tokens = max(runs.totalTokens, eval?.shape.tokens ?? 0, 1)
        let longest = max(runs.lengths.max() ?? 0, eval?.tokenRuns.lengths.max() ?? 0)
        let ratio: Double? = {
            switch options.budget {
            case .keepRatio(let q): return options.method == .matryoshka ? max(q, options.ladder.max() ?? q) : q
            case .rank, .energy: return nil
            }
        }()
        var rank: Int?
        if case .rank(let r) = options.budget { rank = r }
        // Heads per projection unit, as ProjectionFitter cuts them (nil: the whole layer or group).
        let granularity: Granularity =
            options.method == .matryoshka ? .head : (options.method == .pca ? options.granularity : .layer)
        var unitHeads: Int?
        switch granularity {
        case .layer: unitHeads = nil
        case .head: unitHeads = 1
        case .headGroup(let n): unitHeads = n
        }
        var e = fit(
            kinds: kinds, layers: layers,
            groupSize: options.method == .xkv ? min(options.groupSize, max(layers, 1)) : 1,
            unitHeads: unitHeads,
            matryoshka: options.method == .matryoshka, blockRows: min(options.blockTokens, tokens), keepRatio: ratio,
            rank: rank,
            queryHeads: dump.kinds.contains(.query) ? dump.shape.queryHeads ?? dump.shape.kvHeads : 0,
            headDim: dump.shape.headDim, attentionQueries: options.attentionQueries, longestSequence: longest)
        if options.sinkCount > 0 {
            e.add(
                "--keep-sinks",
                keepSinks(
                    dump: dump, options: options, longest: max(longest, eval?.shape.maxTokens ?? 0),
                    blockRows: min(options.blockTokens, tokens)),
                hint: "use fewer --attention-queries")
        }
        return e
    }

    /// `--keep-sinks` on top of a fit (counted in full, though it mostly overlaps other stages): the chosen
    /// positions (8 bytes each per sequence, ≤ 8·T·S), and with attendable queries the attention mass of one
    /// sequence (`attentionSinks` for one layer, plus 16·T: pooled weights, the positions sorted) and the extra
    /// rebuilt variant of the attention errors: per sampled (query, head) one more float64 softmax state
    /// (8·d + 32) and per block two more rebuilt buffers (8·B·C).
    static func keepSinks(dump: Dump, options: FitOptions, longest: Int, blockRows: Int) -> Int {
        let positions = Bytes.product(8, min(options.sinkCount, max(longest, 1)), max(dump.shape.sequences, 1))
        guard dump.hasAttendableQueries, let hq = dump.shape.queryHeads else { return positions }
        let queries = KeepSinks.massQueries(options)
        // Positions are indexed up to the stored length (a --tokens part may start late).
        let stored = max(dump.shape.maxTokens, longest)
        let mass = Bytes.sum(
            attentionSinks(
                layers: 1, positions: stored, queryHeads: hq, kvHeads: dump.shape.kvHeads,
                headDim: dump.shape.headDim, queries: queries, blockRows: blockRows),
            Bytes.product(16, stored))
        let n = min(queries, longest)
        let variant = Bytes.sum(
            Bytes.product(n, hq, Bytes.sum(Bytes.product(8, dump.shape.headDim), 32)),
            Bytes.product(8, blockRows, dump.shape.kvHeads, dump.shape.headDim))
        return Bytes.sum(positions, mass, variant)
    }

    /// `kvstat fit-lowrank` from shapes alone (see the type's documentation for the formulas).
    public static func fit(
        kinds: [KindShape], layers: Int, groupSize: Int, unitHeads: Int? = nil, matryoshka: Bool, blockRows: Int,
        keepRatio: Double?,
        rank: Int? = nil, queryHeads: Int, headDim: Int, attentionQueries: Int, longestSequence: Int
    ) -> MemoryEstimate {
        var e = MemoryEstimate()
        let L = layers
        let G = max(groupSize, 1)
        let B = blockRows
        let groups = (L + G - 1) / G
        var grams = 0
        var nullGram = 0
        var gramPass = 0
        var fitting = 0
        var projections = 0
        var evaluation = 0
        var attention = 0
        for kind in kinds {
            let C = kind.channels
            let W = Bytes.product(G, C)
            let gram = Bytes.sum(Bytes.product(8, W, Bytes.sum(W, 1)) / 2, Bytes.product(8, W))
            grams = Bytes.sum(grams, matryoshka ? Bytes.product(L, gram) : gram)
            // xKV also builds each group's shuffled-token null Gram, one kind at a time, beside the fitted ones.
            if G > 1 { nullGram = max(nullGram, gram) }
            let block = Bytes.product(4, B, C)
            gramPass = max(
                gramPass,
                Bytes.sum(
                    Bytes.product(G, block), Bytes.product(3, block) / 2, Bytes.product(4, B, W),
                    Bytes.product(4, W, W)))
            // A unit: the whole group (W channels), or `unitHeads` heads of one layer (D channels).
            let D = G == 1 ? unitHeads.map { Bytes.product(min(max($0, 1), kind.heads), headDim) } ?? W : W
            fitting = max(
                fitting, D == W ? Bytes.product(40, W, W) : Bytes.sum(Bytes.product(16, W, W), Bytes.product(40, D, D)))
            let r =
                rank.map { min(max($0, 1), D) } ?? keepRatio.map {
                    min(D, Int((Double(D) * min(max($0, 0), 1)).rounded(.up)))
                } ?? D
            projections = Bytes.sum(projections, Bytes.product(groups, 4, W, r))
            evaluation = max(
                evaluation, Bytes.sum(Bytes.product(4 * G, block), Bytes.product(3, block) / 2, Bytes.product(8, B, W)))
        }
        if queryHeads > 0 && attentionQueries > 0 {
            let n = min(attentionQueries, longestSequence)
            attention = Bytes.sum(
                Bytes.product(n, queryHeads, Bytes.sum(Bytes.product(4, headDim), Bytes.product(16, headDim), 128)),
                Bytes.product(8, longestSequence))
        }
        e.add(
            "Gram matrices", Bytes.sum(grams, nullGram),
            hint: matryoshka ? "select fewer --layers" : "use a smaller --group-size")
        e.add("projections", projections, hint: "select fewer --layers, or a smaller budget")
        let stages = [
            ("Gram pass buffers", gramPass, "use a smaller --block-tokens"),
            ("eigen stage", fitting, "use a smaller --group-size"),
            ("evaluation buffers", evaluation, "use a smaller --block-tokens"),
            ("attention errors", attention, "use fewer --attention-queries"),
        ]
        let largest = stages.max { $0.1 < $1.1 }!
        e.add(largest.0, largest.1, hint: largest.2)
        return e
    }

    /// `kvstat fit-lowrank --sweep`: per-layer Grams of every layer, for fit and held-out tokens, with a
    /// window for the tokens before it and with `--keep-sinks` for the sink rows (up to 8 sets), plus the largest
    /// of the fits of every method at the widest rung (xKV: one group's Grams and its null at a time), and the
    /// quantization pass's blocks.
    public static func sweep(dump: Dump, options: FitOptions, layers: Int, runs: TokenRuns) -> MemoryEstimate {
        // The sweep fits every method (xKV with its shuffled-token null) at the ladder's widest rung, whatever
        // --method says: the largest of those fits' estimates.
        let fits = FitMethod.allCases.map { method in
            var o = options
            o.method = method
            o.budget = .keepRatio(options.ladder.max() ?? 1)
            return fit(dump: dump, options: o, layers: layers, runs: runs)
        }
        var e = fits.max { $0.total < $1.total } ?? fit(dump: dump, options: options, layers: layers, runs: runs)
        let kinds = LowRankFit.kinds.filter(dump.kinds.contains)
        // `--keep-sinks` adds the sink rows' Grams of each set (and pca's `+sinks` bases below).
        let sets = (options.holdout > 0 ? 2 : 1) * (options.window > 0 ? 2 : 1) * (options.sinkCount > 0 ? 2 : 1)
        let perLayer = kinds.reduce(0) { total, kind in
            let C = Bytes.product(dump.shape.heads(of: kind), dump.shape.headDim)
            return Bytes.sum(total, Bytes.product(8, C, Bytes.sum(C, 1)) / 2, Bytes.product(8, C))
        }
        e.add("per-layer Grams of the sweep", Bytes.product(sets, layers, perLayer), hint: "select fewer --layers")
        // pca's whole-layer bases at the widest rung, held from pca's pass until cskv reuses them: 4·C·⌈q·C⌉
        // per layer and kind, q the ladder's widest keep ratio.
        let widest = options.ladder.max() ?? 1
        let bases = kinds.reduce(0) { total, kind in
            let C = Bytes.product(dump.shape.heads(of: kind), dump.shape.headDim)
            let rank = Int((widest * Double(C)).rounded(.up))
            return Bytes.sum(total, Bytes.product(4, C, min(max(rank, 1), C)))
        }
        e.add(
            "pca bases kept for cskv", Bytes.product(options.sinkCount > 0 ? 2 : 1, layers, bases),
            hint: "select fewer --layers")
        // The quantization pass (`QuantizationSweep`), both kinds of a block at once: per kind eight B × C float32
        // blocks (the exact block, the two KIVI results GEAR shares, a rebuilt block, GEAR's residual, its
        // rank-r part, one KIVI in progress and the rows kept exact set aside while a block is rebuilt in place),
        // cskv's widest latents B × ⌈q·C⌉ with and without sinks and one rung's copy of them, and GEAR's two
        // packed residual Grams, its float32 SSYRK scratch (4·C²), one dense C × C copy and its eigensolver's
        // workspace (3·8·C²).
        let rows = min(options.blockTokens, max(dump.shape.tokens, 1))
        let pass = kinds.reduce(0) { total, kind in
            let C = Bytes.product(dump.shape.heads(of: kind), dump.shape.headDim)
            let rank = min(max(Int((widest * Double(C)).rounded(.up)), 1), C)
            return Bytes.sum(
                total, Bytes.product(32, rows, C), Bytes.product(12, rows, rank),
                Bytes.product(8, C, Bytes.sum(C, 1)), Bytes.product(28, C, C))
        }
        e.add("quantization pass blocks", pass, hint: "use a smaller --block-tokens")
        // `--keep-sinks` with xKV: per kind, a group's sink-row Gram and the group Gram less it beside the group's
        // own (and one more of each with --holdout); matryoshka's fits with and without sinks (bases of every
        // layer, counted like pca's).
        if options.sinkCount > 0 {
            let G = min(max(options.groupSize, 1), max(layers, 1))
            let groupGrams = kinds.reduce(0) { total, kind in
                let width = Bytes.product(G, dump.shape.heads(of: kind), dump.shape.headDim)
                return Bytes.sum(total, Bytes.product(8, width, Bytes.sum(width, 1)) / 2)
            }
            e.add(
                "--keep-sinks Grams of an xKV group", Bytes.product(options.holdout > 0 ? 4 : 2, groupGrams),
                hint: "use a smaller --group-size")
            e.add("--keep-sinks matryoshka bases", Bytes.product(2, layers, bases), hint: "select fewer --layers")
        }
        return e
    }

    // MARK: inspect --read-all

    /// `kvstat inspect --read-all`: one block of the widest tensor with its read scratch, 10·B·C.
    public static func scan(channels: Int, blockRows: Int) -> MemoryEstimate {
        var e = MemoryEstimate()
        e.add("block buffers", Bytes.product(10, blockRows, channels), hint: "use a smaller --block-tokens")
        return e
    }

    /// `scan` for `dump`.
    public static func scan(dump: Dump, blockTokens: Int) -> MemoryEstimate {
        let channels = dump.kinds.map { Bytes.product(dump.shape.heads(of: $0), dump.shape.headDim) }.max() ?? 0
        return scan(channels: channels, blockRows: min(blockTokens, max(dump.shape.tokens, 1)))
    }
}

/// Memory this process may use: the smallest of physical memory, the kernel's MemAvailable (memory that can be
/// given to new allocations without swapping: free memory plus reclaimable cache) and the cgroup limit
/// (v2 `memory.max` of the process's cgroup and its ancestors, or v1 `memory.limit_in_bytes`) when one is set.
/// The cgroup's current usage is not subtracted: it counts page cache the kernel can reclaim.
public struct MemoryLimit: Sendable, Equatable {
    public var physical: Int?
    public var memAvailable: Int?
    public var cgroup: Int?

    public init(physical: Int?, memAvailable: Int?, cgroup: Int?) {
        (self.physical, self.memAvailable, self.cgroup) = (physical, memAvailable, cgroup)
    }

    /// The smallest of the known limits; nil when none is known.
    public var bytes: Int? { [physical, memAvailable, cgroup].compactMap { $0 }.min() }

    /// The limits of this process, read now.
    public static func current() -> MemoryLimit {
        let physical = ProcessInfo.processInfo.physicalMemory
        let meminfo = (try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8)).flatMap(memAvailable(meminfo:))
        let cgroupText = (try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8)) ?? ""
        return MemoryLimit(
            physical: physical > 0 && physical < UInt64(Int.max) ? Int(physical) : nil, memAvailable: meminfo,
            cgroup: cgroupLimit(procSelfCgroup: cgroupText) { try? String(contentsOfFile: $0, encoding: .utf8) })
    }

    /// `MemAvailable:  123 kB` of /proc/meminfo, in bytes.
    static func memAvailable(meminfo: String) -> Int? {
        for line in meminfo.split(separator: "\n") where line.hasPrefix("MemAvailable:") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count >= 2, let kB = Int(fields[1]) else { return nil }
            let bytes = kB.multipliedReportingOverflow(by: fields.count > 2 && fields[2] == "kB" ? 1024 : 1)
            return bytes.overflow ? nil : bytes.partialValue
        }
        return nil
    }

    /// The smallest memory limit on the process's cgroup and its ancestors (v2), or its v1 memory limit; nil
    /// when none is set. `read` returns a file's text (nil when absent), so tests can give a fake /sys.
    static func cgroupLimit(procSelfCgroup: String, read: (String) -> String?) -> Int? {
        func number(_ text: String?) -> Int? {
            guard let text = text?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty, text != "max" else {
                return nil
            }
            // v1 writes "no limit" as a page-rounded Int.max.
            guard let value = Int(text), value > 0, value < Int.max / 2 else { return nil }
            return value
        }
        var limits: [Int] = []
        for line in procSelfCgroup.split(separator: "\n") {
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard fields.count == 3 else { continue }
            let path = String(fields[2])
            if fields[0] == "0" && fields[1].isEmpty {
                // v2: memory.max of the cgroup and of each ancestor up to the root.
                var components = path.split(separator: "/").map(String.init)
                while true {
                    let directory =
                        "/sys/fs/cgroup" + (components.isEmpty ? "" : "/" + components.joined(separator: "/"))
                    if let limit = number(read(directory + "/memory.max")) { limits.append(limit) }
                    if components.isEmpty { break }
                    components.removeLast()
                }
            } else if fields[1].split(separator: ",").contains("memory") {
                let candidates = ["/sys/fs/cgroup/memory" + (path == "/" ? "" : path), "/sys/fs/cgroup/memory"]
                for candidate in candidates {
                    if let limit = number(read(candidate + "/memory.limit_in_bytes")) {
                        limits.append(limit)
                        break
                    }
                }
            }
        }
        return limits.min()
    }
}

/// Byte arithmetic that saturates at Int.max instead of trapping, and its text.
public enum Bytes {
    /// The product, or Int.max when it overflows (factors are sizes: negative ones count as 0).
    public static func product(_ factors: Int...) -> Int {
        var result = 1
        for factor in factors {
            guard factor > 0 else { return 0 }
            let (value, overflow) = result.multipliedReportingOverflow(by: factor)
            if overflow { return Int.max }
            result = value
        }
        return result
    }

    /// The sum, or Int.max when it overflows.
    public static func sum(_ terms: Int...) -> Int {
        var result = 0
        for term in terms {
            let (value, overflow) = result.addingReportingOverflow(max(term, 0))
            if overflow { return Int.max }
            result = value
        }
        return result
    }

    /// `1536` → `1.5 KiB`; Int.max → `more than 8 EiB`.
    public static func text(_ bytes: Int) -> String {
        if bytes == Int.max { return "more than 8 EiB" }
        let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"]
        var value = Double(bytes)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(bytes) bytes" : String(format: "%.1f", value) + " " + units[unit]
    }
}
