// The fits section's Pareto series with the sweep's quantization points: KIVI per group size and GEAR each one
// series through their bit widths, cskv-int4/int8 their own series, beside the low-rank methods; and sweep.csv's
// attention column, empty where not computed.
import Testing

@testable import KVReport
@testable import KVStat

@Suite struct QuantizedParetoTests {
    @Test func quantizationFamiliesAreSeries() {
        func rung(_ method: String, _ memory: Double, _ error: Double, attention: Double? = nil) -> FitReport.Rung {
            var r = FitReport.Rung(
                method: method, keepRatio: 0.25, memoryRatio: memory, fitError: error, heldOutError: nil, ranks: nil)
            r.attentionOutputError = attention
            return r
        }
        let rungs = [
            rung("pca", 0.25, 0.3), rung("kivi-int4-g32", 0.31, 0.06, attention: 0.1), rung("kivi-int2-g32", 0.19, 0.3),
            rung("kivi-int2-g128", 0.14, 0.4), rung("cskv-int4", 0.12, 0.2),
            rung("gear-int2-r0.0625-s0.01", 0.27, 0.28),
            rung("gear-int4-r0.0625-s0.01", 0.4, 0.05),
        ]
        #expect(FitSeries.family("kivi-int8-g128") == "kivi g128" && FitSeries.family("cskv-int8") == "cskv-int8")
        let csv = FitCSV.sweep(rungs).split(separator: "\n", omittingEmptySubsequences: false)
        #expect(csv[0].hasSuffix(",attention_output_error"))
        #expect(csv[1] == "pca,0.25,0.25,0.3,," && csv[2] == "kivi-int4-g32,0.25,0.31,0.06,,0.1")
        // The Pareto chart's series: one per family.
        let names = Set(rungs.map { FitSeries.family($0.method) })
        #expect(names == ["pca", "kivi g32", "kivi g128", "cskv-int4", "gear"])
    }
}
