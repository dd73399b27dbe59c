import NIOCore
import NIOHTTP1
import NIOPosix
import Prometheus
import ServiceLifecycle

/// Serves the Prometheus text page: `GET /metrics` over plain HTTP/1.1.
///
/// The page is what swift-prometheus renders from its registry (the one the process
/// bootstrapped swift-metrics with). `beforeScrape` runs first on every request, so gauges
/// that mirror current state (link state, outbox depth) are exact at scrape time.
public final class MetricsEndpoint: Service, Sendable {
    /// The address as bound (with the port the system picked for port 0).
    public let host: String
    public let port: Int
    private let channel: any Channel

    /// Binds the listener. `beforeScrape` must be quick; it runs on an event-loop thread.
    public static func bind(
        host: String,
        port: Int,
        registry: PrometheusCollectorRegistry,
        beforeScrape: @escaping @Sendable () -> Void
    ) async throws -> MetricsEndpoint {
        let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .childChannelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.configureHTTPServerPipeline()
                    try channel.pipeline.syncOperations.addHandler(ScrapeHandler(registry: registry, beforeScrape: beforeScrape))
                }
            }
            .bind(host: host, port: port)
            .get()
        return MetricsEndpoint(channel: channel, host: host)
    }

    private init(channel: any Channel, host: String) {
        self.channel = channel
        self.host = host
        self.port = channel.localAddress?.port ?? 0
    }

    /// Serves until graceful shutdown (or cancellation), then closes the listener.
    public func run() async {
        try? await gracefulShutdown()
        try? await channel.close()
    }
}

/// Answers one HTTP request at a time on a connection: the page for `GET /metrics`, 404
/// for other paths, 405 for other methods.
private final class ScrapeHandler: ChannelInboundHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private let registry: PrometheusCollectorRegistry
    private let beforeScrape: @Sendable () -> Void
    private var request: HTTPRequestHead?

    init(registry: PrometheusCollectorRegistry, beforeScrape: @escaping @Sendable () -> Void) {
        self.registry = registry
        self.beforeScrape = beforeScrape
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            request = head
        case .body:
            break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    private func respond(to head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1).first.map(String.init) ?? head.uri
        let status: HTTPResponseStatus
        var body: [UInt8]
        var contentType = "text/plain; charset=utf-8"
        if head.method != .GET && head.method != .HEAD {
            (status, body) = (.methodNotAllowed, Array("only GET\n".utf8))
        } else if path != "/metrics" {
            (status, body) = (.notFound, Array("metrics are at /metrics\n".utf8))
        } else {
            beforeScrape()
            status = .ok
            body = []
            registry.emit(into: &body)
            contentType = "text/plain; version=0.0.4; charset=utf-8"
        }
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: contentType)
        headers.add(name: "Content-Length", value: "\(body.count)")
        if !head.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(wrapOutboundOut(.head(HTTPResponseHead(version: head.version, status: status, headers: headers))), promise: nil)
        if head.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(context.channel.allocator.buffer(bytes: body)))), promise: nil)
        }
        let keepAlive = head.isKeepAlive
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in
            if !keepAlive { channel.close(promise: nil) }
        }
    }
}
