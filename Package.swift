// swift-tools-version: 6.1
// kvstat: streaming statistics and low-rank fitting for LLM KV-cache dumps stored in HDF5.
// Linux only (Debian's libhdf5, OpenBLAS/LAPACKE, FFTW, OpenSSL, SQLite; prctl and glob): no other platform is
// declared because none is built or tested.
import PackageDescription

let package = Package(
    name: "kvstat",
    products: [
        .executable(name: "kvstat", targets: ["kvstat"]),
        .library(name: "KVStat", targets: ["KVStat"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        // C libraries, each wrapped once by one Swift target that imports it `internal` (docs/architecture.md):
        // CHDF5, CDeflate → HDF5Kit; CLAPACK, CFFTW, CHalfFloat, CKernels → KVNumerics; CCrypto → FileDigest;
        // CSQLite → KVBatch;
        // CProcessControl (prctl, the libhdf5 crash guard) → HDF5Kit and the kvstat executable.
        .systemLibrary(
            name: "CHDF5", pkgConfig: "hdf5",
            providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(
            name: "CLAPACK", pkgConfig: "openblas",
            providers: [.apt(["liblapacke-dev", "libopenblas-dev"])]),
        .systemLibrary(
            name: "CFFTW", pkgConfig: "fftw3f",
            providers: [.apt(["libfftw3-dev"])]),
        .systemLibrary(
            name: "CCrypto", pkgConfig: "libcrypto",
            providers: [.apt(["libssl-dev"])]),
        .systemLibrary(
            name: "CSQLite", pkgConfig: "sqlite3",
            providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(
            name: "CDeflate", pkgConfig: "libdeflate",
            providers: [.apt(["libdeflate-dev"])]),
        .target(name: "CHalfFloat"),
        .target(name: "CKernels"),
        .target(name: "CProcessControl"),

        .target(name: "HDF5Kit", dependencies: ["CHDF5", "CDeflate", "CProcessControl"]),
        .target(name: "KVNumerics", dependencies: ["CLAPACK", "CFFTW", "CHalfFloat", "CKernels"]),
        .target(name: "FileDigest", dependencies: ["CCrypto"]),
        .target(
            name: "KVStat",
            dependencies: ["HDF5Kit", "KVNumerics", "FileDigest", .product(name: "Yams", package: "Yams")],
            exclude: [
                "Dump/README.md", "Statistics/README.md", "State/README.md", "LowRank/README.md",
                "Output/README.md", "Support/README.md", "Compress/README.md",
            ]),
        .target(name: "KVReport", dependencies: ["KVStat"]),
        .target(name: "KVBatch", dependencies: ["KVStat", "KVReport", "FileDigest", "CSQLite"]),
        .executableTarget(
            name: "kvstat",
            dependencies: [
                "KVStat", "KVReport", "KVBatch", "KVNumerics", "HDF5Kit", "CProcessControl",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]),

        .testTarget(name: "HDF5KitTests", dependencies: ["HDF5Kit"]),
        .testTarget(name: "KVNumericsTests", dependencies: ["KVNumerics"]),
        .testTarget(name: "FileDigestTests", dependencies: ["FileDigest"]),
        .testTarget(name: "KVStatTests", dependencies: ["KVStat", "HDF5Kit", "KVNumerics"]),
        .testTarget(name: "KVReportTests", dependencies: ["KVReport", "KVStat"]),
        .testTarget(name: "KVBatchTests", dependencies: ["KVBatch"]),
        .testTarget(name: "kvstatTests", dependencies: ["KVStat", "HDF5Kit"]),
    ],
    swiftLanguageModes: [.v6]
)
