import Broker
import HTTPTypes
import Hummingbird
import HummingbirdWebSocket
import Logging
import MeshBusModel
import NIOCore
import Prometheus
import ServiceLifecycle
import SlotCore

/// MeshBus for browsers and HTTP clients (design.md §8): the live status page at `/`;
/// `curl`, scripts and low-code tools send the ROUTER's commands as `POST /api/commands`,
/// follow the events as Server-Sent Events at `/events` or over a WebSocket at `/ws`, and
/// read the Prometheus page at `/metrics`, on one listener.
///
/// Built on Hummingbird 2: routing, bounded request bodies and streamed responses come with
/// it, and its WebSocket module serves the browser side on the same listener.
public struct HTTPGateway: Service {
    /// The largest command body taken; a larger one gets 413.
    public static let maxBodyBytes = CommandEnvelope.maxRequestBytes

    private let application: Application<RouterResponder<GatewayContext>>

    /// Serves `broker` at `host:port` once run (port 0 picks one); `onListening` gets the
    /// port bound. With a `registry`, `/metrics` renders it after `beforeScrape`.
    /// With `tokens`, every request needs one (see ``AccessGate``).
    public init(
        host: String, port: Int, broker: Broker, tokens: AccessTokens?, registry: PrometheusCollectorRegistry?,
        beforeScrape: @escaping @Sendable () -> Void, logger: Logger, onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) {
        let gate = AccessGate(tokens: tokens, loopback: SecurityConfiguration.isLoopback("tcp://\(host):\(port)"))
        let router = Router(context: GatewayContext.self)
        router.add(middleware: AccessMiddleware(gate: gate))
        StatusPage.add(to: router, broker: broker)
        router.get("/events") { request, context in Self.events(request, context: context, broker: broker) }
        // Reached only when the upgrade was refused (not a WebSocket request, or a foreign page).
        router.get("/ws") { _, _ in
            Self.reply(status: .forbidden, code: "bad_request", message: "/ws takes a WebSocket upgrade from a page of this host")
        }
        router.post("/api/commands") { request, context in try await Self.command(request, role: context.role, broker: broker) }
        for method: HTTPRequest.Method in [.get, .put, .delete, .patch] {
            router.on("/api/commands", method: method) { _, _ in
                Self.reply(status: .methodNotAllowed, code: "bad_request", message: "commands are POSTed", allow: "POST")
            }
        }
        if let registry {
            router.get("/metrics") { _, _ in
                beforeScrape()
                var page: [UInt8] = []
                registry.emit(into: &page)
                return Response(
                    status: .ok, headers: [.contentType: "text/plain; version=0.0.4; charset=utf-8"],
                    body: ResponseBody(byteBuffer: ByteBuffer(bytes: page))
                )
            }
        }
        application = Application(
            router: router,
            server: .http1WebSocketUpgrade { request, _, _ in
                guard EventSocket.allows(request) else { return .dontUpgrade }
                // A refused upgrade can only be a bare 400; a closing reason tells a browser why.
                func refuse(_ reason: String) -> ShouldUpgradeResult<WebSocketDataHandler<HTTP1WebSocketUpgradeChannel.Context>> {
                    .upgrade([:]) { _, outbound, _ in try await outbound.close(.policyViolation, reason: reason) }
                }
                if let refusal = gate.refusal(request) { return refuse(refusal) }
                if let slot = SerialRelaySocket.slot(inPath: request.path) {
                    // Lending a radio lets the page's user transmit on the mesh: the send role.
                    if gate.verdict(request) == .granted(.read) { return refuse("unauthorized: lending a radio needs a send token") }
                    guard let port = broker.webSerialPort(slot: slot) else { return refuse("unknown_slot: no webserial slot named '\(slot)'") }
                    return .upgrade([:]) { inbound, outbound, _ in try await SerialRelaySocket.serve(inbound: inbound, outbound: outbound, port: port) }
                }
                return .upgrade([:]) { inbound, outbound, _ in try await EventSocket.serve(inbound: inbound, outbound: outbound, broker: broker) }
            },
            configuration: ApplicationConfiguration(address: .hostname(host, port: port), serverName: "meshbus"),
            onServerRunning: { channel in onListening(channel.localAddress?.port ?? port) },
            logger: logger
        )
    }

    public func run() async throws {
        try await application.run()
    }

    /// One command: the body as on the ROUTER socket, the reply as there, with the HTTP status
    /// its error code maps to.
    static func command(_ request: Request, role: ClientRole?, broker: Broker) async throws -> Response {
        guard let contentType = request.headers[.contentType], contentType.lowercased().hasPrefix("application/json") else {
            return reply(status: .unsupportedMediaType, code: "bad_request", message: "send the command as Content-Type: application/json")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBodyBytes)
        } catch let error as HTTPError where error.status == .contentTooLarge {
            return reply(status: .contentTooLarge, code: "bad_request", message: "the body is over \(maxBodyBytes) bytes")
        }
        let answer = await broker.respond(toRequest: Array(body.readableBytesView), role: role)
        return Response(
            status: status(for: answer.errorCode), headers: [.contentType: "application/json"],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: answer.reply.jsonBytes))
        )
    }

    /// The HTTP status of a reply with this error code (nil: ok), per design.md §8.
    static func status(for code: String?) -> HTTPResponse.Status {
        switch code {
        case nil: .ok
        case "bad_request", "text_too_long": .badRequest
        case "unknown_slot", "unknown_command": .notFound
        case "not_ready": .conflict
        case "gap_too_old": .gone
        case "queue_full": .tooManyRequests
        case "unauthorized": .forbidden
        default: .internalServerError
        }
    }

    /// A refusal in the command reply's shape.
    static func reply(status: HTTPResponse.Status, code: String, message: String, allow: String? = nil) -> Response {
        let body: JSONValue = .object(["ok": .bool(false), "error": .object(["code": .string(code), "message": .string(message)])])
        var headers: HTTPFields = [.contentType: "application/json"]
        if let allow { headers[.allow] = allow }
        return Response(status: status, headers: headers, body: ResponseBody(byteBuffer: ByteBuffer(bytes: body.jsonBytes)))
    }
}

/// A request's context: Hummingbird's, plus the connection, so that a stream whose reader
/// fell behind can be closed even while a write to it waits.
struct GatewayContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel
    /// The role of the request's token; nil when no tokens are configured (all trusted).
    var role: ClientRole?

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}
