// Errors from numerical routines that depend on the data (LAPACK info > 0), as opposed to programming
// errors (info < 0), which are preconditions.

/// A numerical routine did not converge or met data it cannot handle.
public struct NumericalError: Error, CustomStringConvertible, Sendable {
    /// Which routine failed (e.g. "dsyevd").
    public var routine: String
    /// LAPACK's positive `info`, or 0 for non-LAPACK failures.
    public var info: Int
    public var message: String

    public var description: String { "\(routine): \(message) (info = \(info))" }
}

/// Turns a LAPACK `info` into a thrown error (> 0) or a precondition failure (< 0: a bug in kvstat).
func checkLAPACK(_ info: Int32, _ routine: String, _ meaning: String) throws {
    precondition(info >= 0, "\(routine): parameter \(-info) had an illegal value")
    if info > 0 { throw NumericalError(routine: routine, info: Int(info), message: meaning) }
}
