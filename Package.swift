// swift-tools-version: 6.1
import PackageDescription

let package = Package(
    name: "MeshBus",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "meshbus", targets: ["meshbus"]),
        .library(name: "ZeroMQ", targets: ["ZeroMQ"]),
        .library(name: "MeshBusModel", targets: ["MeshBusModel"]),
        .library(name: "MeshtasticProtocol", targets: ["MeshtasticProtocol"]),
        .library(name: "Broker", targets: ["Broker"]),
        .library(name: "HTTPGateway", targets: ["HTTPGateway"]),
        .library(name: "DBus", targets: ["DBus"]),
        .library(name: "MQTTWire", targets: ["MQTTWire"]),
        .library(name: "VirtualRadio", targets: ["VirtualRadio"]),
        .library(name: "SendJournal", targets: ["SendJournal"]),
        .library(name: "MeshBusClient", targets: ["MeshBusClient"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-protobuf.git", from: "1.39.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        // Traits off: no swift-configuration, no full Foundation; the core server is all we use.
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1", traits: []),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-websocket.git", from: "2.8.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CZeroMQ",
            pkgConfig: "libzmq",
            providers: [.apt(["libzmq3-dev"])]
        ),
        .target(name: "ZeroMQ", dependencies: ["CZeroMQ"]),
        .target(name: "MeshBusModel"),
        .target(name: "MeshBusClient", dependencies: ["ZeroMQ", "MeshBusModel"]),
        .target(
            name: "MeshtasticProtocol",
            dependencies: [
                "MeshBusModel",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),
        .target(
            name: "EventLoopTime",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "RadioLink",
            dependencies: [
                "EventLoopTime",
                "MeshBusModel",
                "MeshtasticProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "DBus",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "BluetoothLE",
            dependencies: [
                "DBus",
                "EventLoopTime",
                "RadioLink",
                "MeshtasticProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "WebSerial",
            dependencies: [
                "MeshtasticProtocol",
                "RadioLink",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .target(
            name: "RadioSimulator",
            dependencies: [
                "MeshtasticProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "VirtualRadio",
            dependencies: [
                "MeshtasticProtocol",
                "DescriptorBudget",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
            ]
        ),
        .target(name: "SendJournal"),
        .target(name: "DescriptorBudget"),
        .target(
            name: "SlotCore",
            dependencies: ["MeshBusModel", "MeshtasticProtocol", "RadioLink"]
        ),
        .target(
            name: "Broker",
            dependencies: [
                "EventLoopTime",
                "SlotCore",
                "SendJournal",
                "DescriptorBudget",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                "MeshBusModel",
                "ZeroMQ",
                "MeshtasticProtocol",
                "RadioLink",
                "RadioSimulator",
                "VirtualRadio",
                "WebSerial",
                "BluetoothLE",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "HTTPGateway",
            dependencies: [
                "Broker",
                "EventLoopTime",
                "MeshBusModel",
                "RadioLink",
                "SlotCore",
                "WebSerial",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdWebSocket", package: "hummingbird-websocket"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOWebSocket", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            // The status page, compiled into the binary: no files to install, no build step.
            resources: [
                .embedInCode("StatusPage/index.html"), .embedInCode("StatusPage/status.css"), .embedInCode("StatusPage/status.js"),
                .embedInCode("StatusPage/webserial.html"), .embedInCode("StatusPage/webserial.js"),
            ]
        ),
        .target(
            name: "MeshBusConfiguration",
            dependencies: [
                "Broker",
                "EventLoopTime",
                "BluetoothLE",
                "MQTT",
                "VirtualRadio",
                "RadioLink",
                "RadioSimulator",
                "ZeroMQ",
                "MeshtasticProtocol",
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "Observability",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        .target(
            name: "MQTTWire",
            dependencies: [.product(name: "NIOCore", package: "swift-nio")]
        ),
        .target(
            name: "MQTT",
            dependencies: [
                "EventLoopTime",
                "MQTTWire",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .target(
            name: "MQTTBridge",
            dependencies: [
                "EventLoopTime",
                "MQTT",
                "MQTTWire",
                "MeshBusClient",
                "MeshBusModel",
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .executableTarget(
            name: "meshbus",
            dependencies: [
                "HTTPGateway",
                "DescriptorBudget",
                "MeshBusModel",
                "SlotCore",
                "MQTT",
                "MQTTBridge",
                "MeshBusClient",
                "Broker",
                "MeshBusConfiguration",
                "BluetoothLE",
                "Observability",
                "RadioSimulator",
                "VirtualRadio",
                "ZeroMQ",
                "MeshtasticProtocol",
                "EventLoopTime",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .executableTarget(
            name: "meshbus-workload",
            dependencies: [
                "Broker",
                "MeshtasticProtocol",
                "RadioLink",
                "RadioSimulator",
                "ZeroMQ",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ],
            path: "Benchmarks/Workload"
        ),
        .target(
            name: "MeshBusTestSupport",
            dependencies: ["Broker", "MeshtasticProtocol", "RadioLink", "RadioSimulator", .product(name: "Logging", package: "swift-log")],
            path: "Tests/MeshBusTestSupport"
        ),
        .testTarget(name: "MeshBusModelTests", dependencies: ["MeshBusModel"]),
        .testTarget(
            name: "SlotCoreTests",
            dependencies: ["SlotCore", "MeshBusModel", "MeshtasticProtocol", "RadioLink", "MeshBusTestSupport"]
        ),
        .testTarget(name: "ZeroMQTests", dependencies: ["ZeroMQ"]),
        .testTarget(name: "SendJournalTests", dependencies: ["SendJournal"]),
        .testTarget(name: "DescriptorBudgetTests", dependencies: ["DescriptorBudget"]),
        .testTarget(name: "DBusTests", dependencies: ["DBus", .product(name: "NIOCore", package: "swift-nio")]),
        .testTarget(
            name: "WebSerialTests",
            dependencies: ["WebSerial", "RadioLink", .product(name: "NIOCore", package: "swift-nio")]
        ),
        .testTarget(name: "MQTTBridgeTests", dependencies: ["MQTTBridge", "MeshBusClient", "MeshBusModel"]),
        .testTarget(
            name: "MeshBusClientTests", dependencies: ["MeshBusClient", "MeshBusModel", "MeshBusTestSupport", "Broker", "RadioLink", "RadioSimulator"]
        ),
        .testTarget(
            name: "MeshtasticProtocolTests",
            dependencies: [
                "MeshtasticProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "EventLoopTimeTests", dependencies: ["EventLoopTime", .product(name: "NIOPosix", package: "swift-nio")]),
        .testTarget(
            name: "RadioLinkTests",
            dependencies: ["RadioLink", "RadioSimulator", "MeshtasticProtocol", "MeshBusTestSupport"]
        ),
        .testTarget(
            name: "VirtualRadioTests",
            dependencies: [
                "VirtualRadio",
                "MeshtasticProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
        .testTarget(
            name: "BrokerTests",
            dependencies: [
                "Broker",
                "MeshBusTestSupport",
                "ZeroMQ",
                "MeshtasticProtocol",
                "RadioLink",
                "RadioSimulator",
                "VirtualRadio",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        ),
        .testTarget(name: "MeshBusConfigurationTests", dependencies: ["MeshBusConfiguration", "Broker", "RadioLink", "VirtualRadio", "BluetoothLE", "MQTT"]),
        .testTarget(name: "BluetoothLETests", dependencies: ["BluetoothLE", "DBus"]),
        .testTarget(
            name: "MQTTTests",
            dependencies: [
                "MQTT",
                "MQTTWire",
                "MeshBusTestSupport",
                "MeshtasticProtocol",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOTestUtils", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),
    ]
)
