// Tidy CSV tables of a stats report (one observation per row), for pandas: `pd.read_csv("spectra.csv")`.
import Foundation
import KVStat

public enum StatsCSV {
    /// File name → contents: layers.csv, spectra.csv, similarity.csv, channels.csv, frequency.csv, sinks.csv.
    public static func tables(_ r: StatsReport) -> [String: String] {
        // effective_rank_90 … per level of Spectrum.energyLevels, low_energy_0.0625 … per FrequencyEnergy.fractions.
        let rankColumns = Spectrum.energyLevels.map { "effective_rank_" + String(format: "%g", $0 * 100) }
        let lowColumns = FrequencyEnergy.fractions.map { "low_energy_" + EnergyFraction.key($0) }
        var layers = [
            (["layer", "kind", "tokens", "non_finite"] + rankColumns
                + ["stable_rank", "entropy_rank", "outlier_channels", "sink_tokens", "median_token_norm"] + lowColumns)
                .joined(separator: ",")
        ]
        var spectra = ["layer,kind,head,index,singular_value,cumulative_energy"]
        var channels = ["layer,kind,channel,head,dim,max_abs,mean,rms,kurtosis,outlier"]
        var frequency = ["layer,kind,bin,frequency_start,frequency_end,energy_fraction"]
        let headDim = r.dump.headDim
        for layer in r.layers {
            for kind in layer.kinds.keys.sorted() {
                let s = layer.kinds[kind]!
                let k = kind.rawValue
                let low = FrequencyEnergy.fractions.map { s.frequency?.lowEnergy(below: $0).map(num) ?? "" }
                let ranks: [String] = Spectrum.energyLevels.map { p in s.effectiveRank(at: p).map { String($0) } ?? "" }
                let stable: String = s.stableRank.map(num) ?? ""
                let entropy: String = s.entropyRank.map(num) ?? ""
                let outlierCount: String = s.channels?.outliers.map { String($0.count) } ?? ""
                let sinkCount: String = s.tokenNorms.map { String($0.sinkCount) } ?? ""
                let medianNorm: String = s.tokenNorms?.medianNorm.map(num) ?? ""
                var cells: [String] = [String(layer.layer), k, String(s.tokens), String(s.nonFinite)]
                cells += ranks
                cells += [stable, entropy, outlierCount, sinkCount, medianNorm]
                cells += low
                layers.append(cells.joined(separator: ","))
                if let values = s.singularValues { spectra += rows(layer.layer, k, head: "", values) }
                for (h, values) in (s.headSingularValues ?? []).enumerated() {
                    spectra += rows(layer.layer, k, head: "\(h)", values)
                }
                if let c = s.channels {
                    // outlier: empty where undefined (the median channel's max |x| is 0).
                    let outliers = c.outliers.map(Set.init)
                    for i in c.maxAbs.indices {
                        let outlier = outliers.map { String($0.contains(i)) } ?? ""
                        let cells = [
                            "\(layer.layer)", k, "\(i)", "\(i / headDim)", "\(i % headDim)", num(c.maxAbs[i]),
                            num(c.mean[i]), num(c.rms[i]), c.kurtosis[i].map(num) ?? "", outlier,
                        ]
                        channels.append(cells.joined(separator: ","))
                    }
                }
                if let spectrum = s.frequency?.spectrum {
                    let bins = spectrum.count
                    for (j, e) in spectrum.enumerated() {
                        let start = num(Double(j) / Double(bins))
                        let end = num(Double(j + 1) / Double(bins))
                        frequency.append("\(layer.layer),\(k),\(j),\(start),\(end),\(num(e))")
                    }
                }
            }
        }
        var similarity = ["kind,layer_a,layer_b,cosine,cka,subspace_alignment,channel_alignment"]
        for kind in r.similarityKinds {
            for p in r.pairs(of: kind) {
                similarity.append(
                    [
                        kind.rawValue, "\(p.layerA)", "\(p.layerB)", p.cosine.map(num) ?? "", p.cka.map(num) ?? "",
                        p.subspaceAlignment.map(num) ?? "", p.channelAlignment.map(num) ?? "",
                    ].joined(separator: ","))
            }
        }
        return [
            "layers.csv": layers.joined(separator: "\n") + "\n",
            "spectra.csv": spectra.joined(separator: "\n") + "\n",
            "channels.csv": channels.joined(separator: "\n") + "\n",
            "frequency.csv": frequency.joined(separator: "\n") + "\n",
            "similarity.csv": similarity.joined(separator: "\n") + "\n",
            "sinks.csv": SinkFindings(r).csv,
        ]
    }

    /// One row per singular value; cumulative energy 0 where the spectrum has no energy.
    static func rows(_ layer: Int, _ kind: String, head: String, _ values: [Double]) -> [String] {
        let cumulative = EnergyCurve.cumulative(values) ?? [Double](repeating: 0, count: values.count)
        return values.enumerated().map { i, v in "\(layer),\(kind),\(head),\(i),\(num(v)),\(num(cumulative[i]))" }
    }

    /// Shortest round-tripping decimal.
    static func num(_ v: Double) -> String { v.isFinite ? "\(v)" : "" }
}
