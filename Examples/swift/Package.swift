// swift-tools-version: 6.0
import PackageDescription

// A consumer of MeshBus in Swift. In your own package, depend on MeshBus by its URL instead
// of this path: .package(url: "https://github.com/<owner>/meshbus.git", from: "0.1.0").
let package = Package(
    name: "MeshBusConsumer",
    platforms: [.macOS(.v15)],
    dependencies: [
        .package(name: "MeshBus", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "consumer",
            dependencies: [
                .product(name: "MeshBusClient", package: "MeshBus"),
                .product(name: "MeshBusModel", package: "MeshBus"),
            ]
        ),
    ]
)
