// Reading what a batch child wrote, typed: stats.json decoded as KVStat's own StatsReport (schema
// kvstat.stats/2), a fit's manifest.json as FitReport. A child that exits 0 but whose output does not decode,
// or that counted no tokens, has failed: the batch never records a dump as done on an output it cannot read.
import Foundation
import KVReport
import KVStat

enum ChildOutputs {
    /// `folder/stats.json` of an analyze child, with at least one token counted; else why not, as
    /// `kvstat analyze exited 0 but wrote no readable stats.json[ (reason)]` or `… but counted 0 tokens`.
    static func analysis(in folder: String) -> Result<StatsReport, BatchFailure> {
        let prefix = "kvstat \(AnalyzeArguments.subcommand) exited 0 but"
        let report: StatsReport
        switch decode(StatsReport.self, folder + "/stats.json") {
        case .failure(let failure):
            return .failure(BatchFailure("\(prefix) wrote no readable stats.json" + failure.suffix))
        case .success(let decoded):
            report = decoded
        }
        guard report.schema == StatsReport.schemaName else {
            return .failure(
                BatchFailure(
                    "\(prefix) wrote no readable stats.json (schema '\(report.schema)', not \(StatsReport.schemaName))")
            )
        }
        guard report.dump.tokens > 0 else { return .failure(BatchFailure("\(prefix) counted 0 tokens")) }
        return .success(report)
    }

    /// `folder/manifest.json` of a fit-lowrank child; else `kvstat fit-lowrank exited 0 but wrote no readable
    /// manifest.json[ (reason)]`.
    static func fit(in folder: String) -> Result<FitReport, BatchFailure> {
        decode(FitReport.self, folder + "/manifest.json").mapError { failure in
            BatchFailure(
                "kvstat \(FitLowrankArguments.subcommand) exited 0 but wrote no readable manifest.json"
                    + failure.suffix)
        }
    }

    /// Why a file did not decode: nil when it is missing, else what was wrong with it.
    struct DecodeFailure: Error {
        var reason: String?
        /// ` (reason)`, or nothing for a missing file.
        var suffix: String { reason.map { " (\($0))" } ?? "" }
    }

    static func decode<T: Decodable>(_ type: T.Type, _ path: String) -> Result<T, DecodeFailure> {
        guard FileManager.default.fileExists(atPath: path) else { return .failure(DecodeFailure(reason: nil)) }
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            return .failure(DecodeFailure(reason: error.localizedDescription))
        }
        do { return .success(try JSONText.decode(type, from: data)) } catch {
            return .failure(DecodeFailure(reason: describe(error)))
        }
    }

    /// A decoding error in one line: what was wrong, and where (the key path).
    static func describe(_ error: Error) -> String {
        func path(_ context: DecodingError.Context) -> String {
            let keys = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }
            return keys.isEmpty ? "" : " at " + keys.joined(separator: ".")
        }
        switch error as? DecodingError {
        case .keyNotFound(let key, let context)?:
            return "no '\(key.stringValue)'" + path(context)
        case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?, .dataCorrupted(let context)?:
            let cause = (context.underlyingError as NSError?)?.localizedDescription
            return context.debugDescription + path(context) + (cause.map { ": \($0)" } ?? "")
        default:
            return "\(error)"
        }
    }
}
