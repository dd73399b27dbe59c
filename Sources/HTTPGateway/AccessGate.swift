import Broker
import Foundation
import HTTPTypes
import Hummingbird

/// Who an HTTP request comes from (design.md §8): with `security.tokens` configured, every
/// request shows a bearer token, in `Authorization: Bearer T` or, where a browser cannot set
/// headers (EventSource, WebSocket), as `?token=T`; without, the listener is loopback (or
/// `insecure`) and everyone is trusted.
struct AccessGate: Sendable {
    let tokens: AccessTokens?
    /// Whether the listener is bound to loopback; then a request must also name a loopback
    /// host, so that a page whose name was rebound to 127.0.0.1 (DNS rebinding) is not
    /// same-origin with MeshBus in the browser's eyes and gets nothing.
    let loopback: Bool

    enum Verdict: Equatable {
        /// No tokens configured.
        case trusted
        case granted(ClientRole)
        case noToken
        case unknownToken
        /// Without tokens on loopback: the request names another host.
        case foreignHost
    }

    func verdict(_ request: HTTPRequest) -> Verdict {
        guard let tokens else { return loopback && !Self.namesLoopback(request.authority) ? .foreignHost : .trusted }
        guard let token = Self.token(in: request) else { return .noToken }
        return tokens.role(of: token).map(Verdict.granted) ?? .unknownToken
    }

    /// Why a WebSocket of `request` is closed at once (its close reason), nil if it may stay.
    func refusal(_ request: HTTPRequest) -> String? {
        switch verdict(request) {
        case .trusted, .granted: nil
        case .noToken: "unauthorized: \(Self.noTokenMessage)"
        case .unknownToken: "unauthorized: unknown token"
        case .foreignHost: "unauthorized: \(Self.foreignHostMessage)"
        }
    }

    static let foreignHostMessage = "this listener answers only requests for a loopback host (localhost, 127.0.0.1, [::1])"

    /// Whether a `Host` names this machine's loopback: `localhost`, `127.x.y.z`, `[::1]`, with or without a port.
    static func namesLoopback(_ authority: String?) -> Bool {
        guard var host = authority?.lowercased()[...] else { return false }
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return false }
            return host[host.index(after: host.startIndex)..<close] == "::1"
        }
        if let colon = host.lastIndex(of: ":") { host = host[..<colon] }
        if host == "localhost" { return true }
        let octets = host.split(separator: ".", omittingEmptySubsequences: false)
        return octets.count == 4 && octets[0] == "127" && octets.allSatisfy { UInt8($0) != nil }
    }

    static let noTokenMessage = "this listener needs a token: Authorization: Bearer T, or ?token=T"

    /// The presented token: the `Authorization` header's when it is `Bearer`, else the query's
    /// `token` (a proxy's Basic authorization may ride along with a browser's requests).
    static func token(in request: HTTPRequest) -> Substring? {
        if let header = request.headerFields[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            if parts.count == 2 && parts[0].lowercased() == "bearer" { return parts[1] }
        }
        guard let path = request.path, let question = path.firstIndex(of: "?") else { return nil }
        for pair in path[path.index(after: question)...].split(separator: "&") where pair.hasPrefix("token=") {
            let value = pair.dropFirst("token=".count)
            return value.removingPercentEncoding.map { Substring($0) } ?? value
        }
        return nil
    }
}

/// Refuses requests without a known token (401, with `WWW-Authenticate`), and the WebSerial
/// page to a `read` token (403); passes the role on in the context, where the commands check
/// it (403 for a radio command with `read`). The pages' scripts and style are open to all.
struct AccessMiddleware: RouterMiddleware {
    typealias Context = GatewayContext
    let gate: AccessGate

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // The page's script and style hold no data, and a browser fetches them without the token.
        if StatusPage.isAsset(request.uri.path) { return try await next(request, context) }
        switch gate.verdict(request.head) {
        case .trusted:
            return try await next(request, context)
        case .noToken:
            return Self.unauthorized(AccessGate.noTokenMessage)
        case .unknownToken:
            return Self.unauthorized("unknown token")
        case .foreignHost:
            return HTTPGateway.reply(status: .forbidden, code: "unauthorized", message: AccessGate.foreignHostMessage)
        case .granted(let role):
            // The WebSerial page lends a radio: its user can transmit on the mesh.
            if role == .read && request.uri.path.hasPrefix("/webserial/") {
                return HTTPGateway.reply(status: .forbidden, code: "unauthorized", message: "lending a radio needs a send token")
            }
            var context = context
            context.role = role
            return try await next(request, context)
        }
    }

    static func unauthorized(_ message: String) -> Response {
        var response = HTTPGateway.reply(status: .unauthorized, code: "unauthorized", message: message)
        response.headers[.wwwAuthenticate] = "Bearer realm=\"meshbus\""
        return response
    }
}
