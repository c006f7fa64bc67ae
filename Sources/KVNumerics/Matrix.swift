// A dense row-major matrix: the value type statistics hand to LAPACK and get back from it.

/// A dense matrix stored row-major (`values[row * columns + column]`).
public struct Matrix<Element: BinaryFloatingPoint & Sendable>: Sendable, Equatable {
    public let rows: Int
    public let columns: Int
    public var values: [Element]

    /// A `rows × columns` matrix of zeros.
    public init(rows: Int, columns: Int) {
        precondition(rows >= 0 && columns >= 0, "negative matrix size")
        self.rows = rows
        self.columns = columns
        self.values = [Element](repeating: 0, count: rows * columns)
    }

    /// A matrix over existing row-major values.
    public init(rows: Int, columns: Int, values: [Element]) {
        precondition(values.count == rows * columns, "matrix values do not match \(rows)×\(columns)")
        self.rows = rows
        self.columns = columns
        self.values = values
    }

    public subscript(row: Int, column: Int) -> Element {
        get { values[row * columns + column] }
        set { values[row * columns + column] = newValue }
    }

    /// The transpose.
    public var transposed: Matrix {
        var t = Matrix(rows: columns, columns: rows)
        for r in 0..<rows { for c in 0..<columns { t.values[c * rows + r] = values[r * columns + c] } }
        return t
    }

    /// The symmetric `n × n` matrix whose lower triangle is `packed` (row by row: (i, j), j ≤ i, at
    /// i·(i+1)/2 + j), as `BLAS.accumulateGram` fills it.
    public static func fromPackedLower(_ packed: [Element], n: Int) -> Matrix {
        precondition(packed.count == n * (n + 1) / 2, "packed triangle does not match n = \(n)")
        var m = Matrix(rows: n, columns: n)
        for i in 0..<n {
            let row = i * (i + 1) / 2
            for j in 0...i {
                m.values[i * n + j] = packed[row + j]
                m.values[j * n + i] = packed[row + j]
            }
        }
        return m
    }

    /// Sum of the diagonal.
    public var trace: Element {
        var s: Element = 0
        for i in 0..<min(rows, columns) { s += values[i * columns + i] }
        return s
    }
}
