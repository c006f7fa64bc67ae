// Rotary position embedding (RoPE) as a model applies it to keys, for pre-RoPE key fits (`--keys pre-rope`):
// the value type, its application to token blocks, and where its parameters come from (the dump's root
// attributes, command-line overrides, defaults).
import Foundation

/// RoPE. At position p, pair i (0 ≤ i < rotaryDim/2) of each head's first `rotaryDim` channels, (a, b), turns
/// by the angle p·θ^(−2i/rotaryDim): (a, b) → (a·cos − b·sin, b·cos + a·sin). Channels from `rotaryDim` on are
/// left alone (partial rotary). `rotate-half` (Hugging Face, GPT-NeoX) pairs channel i with i + rotaryDim/2;
/// `interleaved` (GPT-J, llama.cpp's normal mode) pairs 2i with 2i + 1. Angles, cosines, sines and the rotation
/// are float64, rounded to float32 once. Each position's rotation is orthogonal, so ‖RoPE(x)‖ = ‖x‖ row by row.
public struct RotaryEmbedding: Sendable, Codable, Equatable {
    public enum Style: String, Sendable, Codable, CaseIterable {
        case rotateHalf = "rotate-half"
        case interleaved

        /// The option's and attribute's spellings: `rotate-half` (also `rotate_half`, `neox`), `interleaved`
        /// (also `gptj`).
        public init?(text: String) {
            switch text.trimmingCharacters(in: .whitespaces).lowercased() {
            case "rotate-half", "rotate_half", "neox": self = .rotateHalf
            case "interleaved", "gptj", "gpt-j": self = .interleaved
            default: return nil
            }
        }
    }

    /// The base θ (`rope_theta`).
    public var theta: Double
    /// Channels of each head that are rotated (even, 2 … head_dim).
    public var rotaryDim: Int
    public var style: Style

    enum CodingKeys: String, CodingKey {
        case theta, style
        case rotaryDim = "rotary_dim"
    }

    public init(theta: Double, rotaryDim: Int, style: Style) {
        (self.theta, self.rotaryDim, self.style) = (theta, rotaryDim, style)
    }

    /// The channels (within a head) of pair i.
    @inline(__always) func pair(_ i: Int) -> (Int, Int) {
        style == .rotateHalf ? (i, i + rotaryDim / 2) : (2 * i, 2 * i + 1)
    }

    /// θ^(−2i/rotaryDim) for every pair i, float64.
    public var inverseFrequencies: [Double] {
        (0..<(rotaryDim / 2)).map { pow(theta, -Double(2 * $0) / Double(rotaryDim)) }
    }

    /// Rotates, in place, `rows` rows of `heads` × `headDim` channels (heads side by side, as a layer's block
    /// holds them), row r being the token at position `positions[r]`. `resolve` and `FitArtifacts.load` keep
    /// rotaryDim even, from 2 to headDim; any other value (a bug) leaves `x` as it is rather than index past a
    /// head.
    public func apply(
        _ x: UnsafeMutableBufferPointer<Float>, rows: Int, heads: Int, headDim: Int, positions: [Int]
    ) {
        guard rotaryDim >= 2, rotaryDim % 2 == 0, rotaryDim <= headDim, x.count >= rows * heads * headDim,
            positions.count >= rows
        else { return }
        let frequencies = inverseFrequencies
        var cosines = [Double](repeating: 0, count: frequencies.count)
        var sines = cosines
        for r in 0..<rows {
            let p = Double(positions[r])
            for i in frequencies.indices {
                let angle = p * frequencies[i]
                (cosines[i], sines[i]) = (cos(angle), sin(angle))
            }
            for h in 0..<heads {
                let base = r * heads * headDim + h * headDim
                for i in frequencies.indices {
                    let (j, k) = pair(i)
                    let a = Double(x[base + j])
                    let b = Double(x[base + k])
                    x[base + j] = Float(a * cosines[i] - b * sines[i])
                    x[base + k] = Float(b * cosines[i] + a * sines[i])
                }
            }
        }
    }

    /// `apply` on a copy of the first rows × heads·headDim values of `x`.
    public func applied(_ x: [Float], rows: Int, heads: Int, headDim: Int, positions: [Int]) -> [Float] {
        var y = Array(x[0..<(rows * heads * headDim)])
        y.withUnsafeMutableBufferPointer { apply($0, rows: rows, heads: heads, headDim: headDim, positions: positions) }
        return y
    }

    /// The positions of the rows of a block made of `pieces` (each run's stored token index, `start + offset`).
    public static func positions(of pieces: some Sequence<TokenRun>) -> [Int] {
        pieces.flatMap { $0.start..<($0.start + $0.count) }
    }
}

/// Command-line values that override the dump's RoPE attributes (`--rope-theta`, `--rope-style`, `--rotary-dim`).
public struct RopeOverrides: Sendable, Equatable {
    public var theta: Double?
    public var style: RotaryEmbedding.Style?
    public var rotaryDim: Int?

    public init(theta: Double? = nil, style: RotaryEmbedding.Style? = nil, rotaryDim: Int? = nil) {
        (self.theta, self.style, self.rotaryDim) = (theta, style, rotaryDim)
    }
}

extension RotaryEmbedding {
    /// Root attributes read: `rope_theta` (required unless `--rope-theta`), `rope_style`, `rotary_dim`,
    /// `rope_scaling` (JSON; refused unless absent, null or of type `default`/`none`).
    public static let attributeNames = (
        theta: "rope_theta", style: "rope_style", dim: "rotary_dim", scaling: "rope_scaling"
    )

    /// The RoPE of `dump`'s keys: each parameter from `overrides`, else the dump's root attribute, else its
    /// default (style rotate-half, rotary_dim = head_dim; θ has none). Throws one line: `.usage` for an override
    /// the dump cannot take (rotary_dim > head_dim), `.badData` for a missing θ, a bad attribute, or RoPE scaling.
    public static func resolve(
        _ dump: Dump, overrides: RopeOverrides
    ) throws(DumpError) -> (rope: RotaryEmbedding, sources: [String: String]) {
        let names = attributeNames
        let headDim = dump.shape.headDim
        var sources: [String: String] = [:]
        if let text = dump.attributes[names.scaling] { try checkScaling(text, file: dump.path) }
        let theta: Double
        if let value = overrides.theta {
            (theta, sources["theta"]) = (value, "--rope-theta")
        } else if let text = dump.attributes[names.theta] {
            guard let value = Double(text.trimmingCharacters(in: .whitespaces)), value.isFinite, value > 0 else {
                throw DumpError(
                    .badData, "root attribute \(names.theta) '\(text)' is not a positive number (give --rope-theta)",
                    file: dump.path)
            }
            (theta, sources["theta"]) = (value, "dump attribute \(names.theta)")
        } else {
            throw DumpError(
                .badData,
                "has no root attribute \(names.theta): --keys pre-rope needs the RoPE base (give --rope-theta, e.g. "
                    + "the model config's rope_theta)",
                file: dump.path)
        }
        let style: Style
        if let value = overrides.style {
            (style, sources["style"]) = (value, "--rope-style")
        } else if let text = dump.attributes[names.style] {
            guard let value = Style(text: text) else {
                throw DumpError(
                    .badData,
                    "root attribute \(names.style) '\(text)' is neither rotate-half nor interleaved "
                        + "(give --rope-style)",
                    file: dump.path)
            }
            (style, sources["style"]) = (value, "dump attribute \(names.style)")
        } else {
            (style, sources["style"]) = (.rotateHalf, "default (rotate-half, Hugging Face)")
        }
        let dim: Int
        if let value = overrides.rotaryDim {
            guard value >= 2, value % 2 == 0, value <= headDim else {
                throw DumpError(
                    .usage, "--rotary-dim \(value): must be even, from 2 to the dump's head_dim \(headDim)",
                    file: dump.path)
            }
            (dim, sources["rotary_dim"]) = (value, "--rotary-dim")
        } else if let text = dump.attributes[names.dim] {
            guard let value = Int(text.trimmingCharacters(in: .whitespaces)), value >= 2, value % 2 == 0,
                value <= headDim
            else {
                throw DumpError(
                    .badData,
                    "root attribute \(names.dim) '\(text)' is not an even number from 2 to head_dim \(headDim) "
                        + "(give --rotary-dim)",
                    file: dump.path)
            }
            (dim, sources["rotary_dim"]) = (value, "dump attribute \(names.dim)")
        } else {
            guard headDim % 2 == 0 else {
                throw DumpError(
                    .badData, "head_dim \(headDim) is odd: give --rotary-dim (an even number of rotated channels)",
                    file: dump.path)
            }
            (dim, sources["rotary_dim"]) = (headDim, "default (head_dim)")
        }
        return (RotaryEmbedding(theta: theta, rotaryDim: dim, style: style), sources)
    }

    /// Refuses RoPE scaling (llama3, yarn, linear, dynamic, …), whose angles plain RoPE would get wrong: the
    /// attribute is JSON (an object with `rope_type` or `type`), or `null`/`None`/empty for none.
    static func checkScaling(_ text: String, file: String) throws(DumpError) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        if ["", "null", "none"].contains(trimmed.lowercased()) { return }
        let object = (try? JSONSerialization.jsonObject(with: Data(trimmed.utf8))) as? [String: Any]
        guard let object else {
            throw DumpError(
                .badData, "root attribute rope_scaling '\(text)' is not a JSON object or null", file: file)
        }
        if object.isEmpty { return }
        let type = (object["rope_type"] ?? object["type"]) as? String ?? "(no rope_type)"
        if ["default", "none"].contains(type.lowercased()) { return }
        throw DumpError(
            .badData,
            "RoPE scaling '\(type)' (root attribute rope_scaling) is not supported: --keys pre-rope applies plain "
                + "RoPE only",
            file: file)
    }
}
