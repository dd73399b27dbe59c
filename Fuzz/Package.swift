// swift-tools-version: 6.0
// libFuzzer targets for MeshBus's input parsers. Not part of the main build: build and run
// them with `scripts/fuzz` (it passes -sanitize=fuzzer to every module, so that the code
// under test is instrumented).
import PackageDescription

let package = Package(
    name: "MeshBusFuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "MeshBus", path: "..")],
    targets: [
        .target(name: "FuzzSupport"),
        .executableTarget(
            name: "FrameFuzzer",
            dependencies: ["FuzzSupport", .product(name: "MeshtasticProtocol", package: "MeshBus")]
        ),
        .executableTarget(
            name: "FromRadioFuzzer",
            dependencies: [
                "FuzzSupport",
                .product(name: "MeshBusModel", package: "MeshBus"),
                .product(name: "MeshtasticProtocol", package: "MeshBus"),
            ]
        ),
        .executableTarget(
            name: "CommandFuzzer",
            dependencies: [
                "FuzzSupport",
                .product(name: "Broker", package: "MeshBus"),
                .product(name: "MeshBusModel", package: "MeshBus"),
                .product(name: "MeshtasticProtocol", package: "MeshBus"),
            ]
        ),
        .executableTarget(
            name: "DBusFuzzer",
            dependencies: ["FuzzSupport", .product(name: "DBus", package: "MeshBus")]
        ),
        .executableTarget(
            name: "HTTPInputFuzzer",
            dependencies: [
                "FuzzSupport",
                .product(name: "HTTPGateway", package: "MeshBus"),
                .product(name: "MeshBusModel", package: "MeshBus"),
            ]
        ),
        .executableTarget(
            name: "JournalFuzzer",
            dependencies: ["FuzzSupport", .product(name: "SendJournal", package: "MeshBus")]
        ),
        .executableTarget(
            name: "MQTTFuzzer",
            dependencies: ["FuzzSupport", .product(name: "MQTTWire", package: "MeshBus")]
        ),
        .executableTarget(
            name: "VirtualRadioFuzzer",
            dependencies: ["FuzzSupport", .product(name: "VirtualRadio", package: "MeshBus")]
        ),
    ]
)
