// swift-tools-version: 6.0
import PackageDescription

/// One set of settings for every target: Swift 6 language mode (strict concurrency is implied).
let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    // A file uses only members of modules it imports, and a target imports only what it
    // declares: Package.swift stays the true list of each target's dependencies.
    .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
    name: "segmentd",
    platforms: [.macOS(.v15)],
    // What a package outside this repository builds on (README: Adding a dimension;
    // Examples/CustomDimension uses them): the plugin API and its JSON values, the command
    // line's entry point for a segmentd with dimensions of its own, the engine and the
    // application for tests that run a dimension in-process, and the RPC client.
    products: [
        .executable(name: "segmentd", targets: ["segmentd"]),
        .library(name: "SegmentCore", targets: ["SegmentCore"]),
        .library(name: "WireJSON", targets: ["WireJSON"]),
        .library(name: "SegmentdCLI", targets: ["SegmentdCLI"]),
        .library(name: "SegmentEngine", targets: ["SegmentEngine"]),
        .library(name: "SegmentdApp", targets: ["SegmentdApp"]),
        .library(name: "LineRPC", targets: ["LineRPC"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/LebJe/TOMLKit.git", from: "0.6.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        // FilePath, which swift-subprocess's API takes.
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
    ],
    targets: [
        // A small JSON value type with a strict parser and a compact serializer, shared by the
        // core (filters are JSON) and LineRPC (which must not know the core).
        .target(name: "WireJSON", swiftSettings: swiftSettings),
        .target(
            name: "SegmentCore",
            dependencies: ["WireJSON"],
            swiftSettings: swiftSettings
        ),
        // System zlib (zlib1g-dev), for gzip streams and imports.
        .systemLibrary(name: "CZlib", path: "Sources/CZlib"),
        // Encodings shared by the engine's exports and the CLI: gzip, SHA-256, RFC 4180 CSV.
        .target(name: "StreamCodec", dependencies: ["CZlib"], swiftSettings: swiftSettings),

        .target(name: "StatusDimension", dependencies: ["SegmentCore", "WireJSON"], path: "Plugins/StatusDimension", swiftSettings: swiftSettings),
        .target(name: "FieldDimension", dependencies: ["SegmentCore", "WireJSON"], path: "Plugins/FieldDimension", swiftSettings: swiftSettings),
        .target(name: "LabelDimension", dependencies: ["SegmentCore", "WireJSON"], path: "Plugins/LabelDimension", swiftSettings: swiftSettings),
        .target(name: "FunnelDimension", dependencies: ["SegmentCore", "WireJSON"], path: "Plugins/FunnelDimension", swiftSettings: swiftSettings),
        .target(name: "EngagementDimension", dependencies: ["SegmentCore", "WireJSON"], path: "Plugins/EngagementDimension", swiftSettings: swiftSettings),
        .target(name: "SegmentDimension", dependencies: ["SegmentCore", "WireJSON"], path: "Plugins/SegmentDimension", swiftSettings: swiftSettings),

        .target(
            name: "SegmentStore",
            dependencies: [
                "SegmentCore", .product(name: "GRDB", package: "GRDB.swift"), .product(name: "GRDBSQLite", package: "GRDB.swift"),
            ],
            swiftSettings: swiftSettings
        ),
        // The PostgreSQL store of a fleet: a synchronous SQLExecutor over postgres-nio
        // connections, the book's schema and migrations, advisory locks and LISTEN/NOTIFY.
        .target(
            name: "PostgresStore",
            dependencies: [
                "SegmentCore", "SegmentStore",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SegmentEngine",
            dependencies: ["SegmentCore", "SegmentStore", "StreamCodec", "WireJSON", .product(name: "Logging", package: "swift-log"), .product(name: "CoreMetrics", package: "swift-metrics")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "LineRPC",
            dependencies: [
                "WireJSON",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "SegmentRPC",
            dependencies: ["SegmentEngine", "SegmentCore", "LineRPC", "StreamCodec", "WireJSON", .product(name: "Logging", package: "swift-log"), .product(name: "CoreMetrics", package: "swift-metrics")],
            swiftSettings: swiftSettings
        ),
        // Wires the six built-in plugins, the engine and the server: what `segmentd serve`
        // runs and what the end-to-end tests build directly.
        // Records the git commit for `segmentd --version` and `rpc.hello`.
        .plugin(name: "GitCommit", capability: .buildTool(), path: "BuildPlugins/GitCommit"),
        .target(
            name: "SegmentdApp",
            dependencies: [
                "SegmentRPC", "SegmentEngine", "SegmentCore", "SegmentStore", "LineRPC", "WireJSON", "PostgresStore",
                "StatusDimension", "FieldDimension", "LabelDimension", "FunnelDimension", "EngagementDimension", "SegmentDimension",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "TOMLKit", package: "TOMLKit"),
            ],
            swiftSettings: swiftSettings,
            plugins: ["GitCommit"]
        ),
        // `segmentd bench`: synthetic book, SQLite baseline, measurements.
        .target(
            name: "SegmentBench",
            dependencies: ["SegmentdApp", "SegmentEngine", "SegmentCore", "LineRPC", "WireJSON", "StreamCodec", "PostgresStore",
                           .product(name: "GRDB", package: "GRDB.swift")],
            swiftSettings: swiftSettings
        ),
        // The command line, as a library: `Segmentd.main(dimensions:)` is the entry point of
        // segmentd and of a segmentd built with extra dimensions.
        .target(
            name: "SegmentdCLI",
            dependencies: ["SegmentdApp", "SegmentBench", "SegmentEngine", "SegmentCore", "StreamCodec", "LineRPC", "WireJSON", "PostgresStore",
                           .product(name: "ArgumentParser", package: "swift-argument-parser"),
                           .product(name: "Logging", package: "swift-log"), .product(name: "Metrics", package: "swift-metrics")],
            swiftSettings: swiftSettings
        ),
        .executableTarget(name: "segmentd", dependencies: ["SegmentdCLI"], swiftSettings: swiftSettings),

        // The test suites' `.ownThreads` trait: tests run on threads of their own, not on the
        // cooperative pool that one CPU-bound test would otherwise hold (see OwnThreads.swift).
        .target(name: "TestThreads", dependencies: ["LineRPC"], path: "Tests/TestThreads", swiftSettings: swiftSettings),
        // A throwaway PostgreSQL server for the tests (initdb, pg_ctl through swift-subprocess).
        .target(
            name: "TestPostgres",
            dependencies: ["PostgresStore", "SegmentCore",
                           .product(name: "Subprocess", package: "swift-subprocess"),
                           .product(name: "SystemPackage", package: "swift-system")],
            path: "Tests/TestPostgres", swiftSettings: swiftSettings
        ),
        .testTarget(name: "WireJSONTests", dependencies: ["WireJSON", "TestThreads"], swiftSettings: swiftSettings),
        .testTarget(name: "StreamCodecTests", dependencies: ["StreamCodec", "TestThreads"], swiftSettings: swiftSettings),
        .testTarget(
            name: "SegmentEngineTests",
            dependencies: [
                "SegmentEngine", "SegmentCore", "SegmentStore", "PostgresStore", "TestPostgres",
                "StatusDimension", "FieldDimension", "LabelDimension", "FunnelDimension", "EngagementDimension", "SegmentDimension",
                "TestThreads", "WireJSON", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "LineRPCTests",
            dependencies: [
                "LineRPC", "WireJSON", "TestThreads",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "MetricsTestKit", package: "swift-metrics"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "PostgresStoreTests",
            dependencies: ["PostgresStore", "SegmentCore", "TestPostgres", "TestThreads"],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "EndToEndTests",
            // `segmentd` (the executable) is built for the tests that run the real binary.
            dependencies: ["SegmentdApp", "SegmentRPC", "LineRPC", "WireJSON", "SegmentEngine", "SegmentCore", "StreamCodec", "segmentd", "TestThreads", "TestPostgres", "PostgresStore",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "NIOCore", package: "swift-nio"), .product(name: "NIOPosix", package: "swift-nio")],
            // Read at run time from the package folder, not built into the bundle.
            exclude: ["Corpus"],
            swiftSettings: swiftSettings
        ),
    ]
)
