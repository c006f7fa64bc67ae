// `kvstat fit-lowrank --keys pre-rope`: which keys a fit compresses, the kinds it then fits and reports, and
// what manifest.json records about the RoPE applied to the rebuilt keys (`rope`).

/// Which keys a fit compresses: the dump's keys as cached (post-RoPE for a RoPE model) or the keys before the
/// rotary embedding (`key_pre_rope`), rebuilt and then rotated (xKV, Palu, KVQuant, CSKV compress these).
public enum KeySpace: String, Sendable, Codable, CaseIterable {
    case postRope = "post-rope"
    case preRope = "pre-rope"
}

/// The RoPE of a pre-RoPE fit as manifest.json records it (`rope`): the parameters, where each came from, and
/// what the keys rebuilt and rotated were compared with.
public struct RopeReport: Codable, Sendable, Equatable {
    public var keys = KeySpace.preRope.rawValue
    public var theta: Double
    public var style: String
    public var rotaryDim: Int
    /// Parameter (`theta`, `style`, `rotary_dim`) → its source: `--rope-theta`, `dump attribute rope_theta`,
    /// `default (head_dim)`, ….
    public var sources: [String: String]
    public var positions = "the token's index in its sequence as stored in the dump"
    /// What RoPE(K̂_pre) is compared with: `key` (the dump's own post-RoPE keys) or `rope(key_pre_rope)`
    /// (the dump has no post-RoPE keys).
    public var reference: String

    enum CodingKeys: String, CodingKey {
        case keys, theta, style, sources, positions, reference
        case rotaryDim = "rotary_dim"
    }

    public init(_ rope: RotaryEmbedding, sources: [String: String], reference: String) {
        (theta, style, rotaryDim) = (rope.theta, rope.style.rawValue, rope.rotaryDim)
        (self.sources, self.reference) = (sources, reference)
    }

    /// The RoPE recorded (nil for an unknown style: a manifest of a later kvstat).
    public var embedding: RotaryEmbedding? {
        RotaryEmbedding.Style(rawValue: style).map { RotaryEmbedding(theta: theta, rotaryDim: rotaryDim, style: $0) }
    }
}

extension LowRankFit {
    /// The kinds a fit compresses (keys or pre-RoPE keys, and values) and, for `--keys pre-rope`, the RoPE that
    /// prices the rebuilt keys after rotation with its manifest entry. Refuses (one line, exit 65) a pre-RoPE
    /// fit of a dump, or `--eval` dump, without `key_pre_rope`, or without a RoPE base (`RotaryEmbedding.resolve`).
    static func fittedKinds(
        _ dump: Dump, evalDump: Dump?, options: FitOptions
    ) throws(DumpError) -> (kinds: [TensorKind], rope: (rope: RotaryEmbedding, report: RopeReport)?) {
        guard options.preRopeKeys else { return (kinds.filter(dump.kinds.contains), nil) }
        for d in [dump] + (evalDump.map { [$0] } ?? []) where !d.kinds.contains(.keyPreRope) {
            throw DumpError(
                .badData,
                "has no pre-RoPE keys (key_pre_rope): --keys pre-rope fits them (tools/kvdump.py --pre-rope-keys "
                    + "dumps them)",
                file: d.path)
        }
        let (rope, sources) = try RotaryEmbedding.resolve(dump, overrides: options.ropeOverrides)
        let reference = dump.kinds.contains(.key) ? "key" : "rope(key_pre_rope)"
        return (
            [TensorKind.keyPreRope, .value].filter(dump.kinds.contains),
            (rope, RopeReport(rope, sources: sources, reference: reference))
        )
    }
}
