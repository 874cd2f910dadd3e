// swift-tools-version: 6.0
import PackageDescription

// A segmentd with a dimension of its own, built outside segmentd's package: the way a
// company adds the filters its own product needs without forking segmentd. Here segmentd is
// a path dependency (this folder lives in its repository); elsewhere it would be
// `.package(url: "https://…/segmentd.git", from: "…")`.
let package = Package(
    name: "CustomDimension",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "segmentd", path: "../.."),
        // Only the test, to run the server binary.
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
    ],
    targets: [
        // The dimension: segmentd's plugin API (SegmentCore) and its JSON values (WireJSON).
        .target(
            name: "MailboxDimension",
            dependencies: [.product(name: "SegmentCore", package: "segmentd"), .product(name: "WireJSON", package: "segmentd")]
        ),
        // The server: segmentd's whole command line, with the dimension added.
        .executableTarget(
            name: "custom-segmentd",
            dependencies: ["MailboxDimension", .product(name: "SegmentdCLI", package: "segmentd")]
        ),
        .testTarget(
            name: "MailboxDimensionTests",
            dependencies: [
                "MailboxDimension", "custom-segmentd",
                .product(name: "SegmentCore", package: "segmentd"), .product(name: "SegmentEngine", package: "segmentd"),
                .product(name: "SegmentdApp", package: "segmentd"), .product(name: "LineRPC", package: "segmentd"),
                .product(name: "WireJSON", package: "segmentd"),
                .product(name: "Subprocess", package: "swift-subprocess"),
            ]
        ),
    ]
)
