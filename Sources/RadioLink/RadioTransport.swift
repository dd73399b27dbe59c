import MeshtasticProtocol
import NIOCore
import NIOPosix

/// How a slot reaches its radio. TCP today; serial, BLE and WebSerial slot in behind the
/// same requirement: open one framed channel, and nothing else (never a second connection).
public protocol RadioTransport: Sendable, CustomStringConvertible {
    /// Opens the link. Throws if the radio cannot be reached.
    func open() async throws -> StreamChannel
    /// Short kind for `status`: `tcp`, `serial`, `simulator`.
    var kind: String { get }
}

/// A radio's TCP API (port 4403 on real radios), or the simulator's.
public struct TCPRadioTransport: RadioTransport {
    public let host: String
    public let port: Int
    public let connectTimeout: Duration
    let group: any EventLoopGroup

    public init(host: String, port: Int, connectTimeout: Duration = .seconds(10), group: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton) {
        self.host = host
        self.port = port
        self.connectTimeout = connectTimeout
        self.group = group
    }

    public var kind: String { "tcp" }
    public var description: String { "tcp://\(host):\(port)" }

    public func open() async throws -> StreamChannel {
        try await ClientBootstrap(group: group)
            .connectTimeout(.milliseconds(Int64(connectTimeout.components.seconds * 1000)))
            .channelOption(.socketOption(.so_keepalive), value: 1)
            .channelOption(.tcpOption(.tcp_nodelay), value: 1)
            .connect(host: host, port: port) { channel in StreamChannel.configure(channel) }
    }
}
