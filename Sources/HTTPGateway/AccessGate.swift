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

    enum Verdict: Equatable {
        /// No tokens configured.
        case trusted
        case granted(ClientRole)
        case noToken
        case unknownToken
    }

    func verdict(_ request: HTTPRequest) -> Verdict {
        guard let tokens else { return .trusted }
        guard let token = Self.token(in: request) else { return .noToken }
        return tokens.role(of: token).map(Verdict.granted) ?? .unknownToken
    }

    /// Why a WebSocket of `request` is closed at once (its close reason), nil if it may stay.
    func refusal(_ request: HTTPRequest) -> String? {
        switch verdict(request) {
        case .trusted, .granted: nil
        case .noToken: "unauthorized: \(Self.noTokenMessage)"
        case .unknownToken: "unauthorized: unknown token"
        }
    }

    static let noTokenMessage = "this listener needs a token: Authorization: Bearer T, or ?token=T"

    /// The presented token: the `Authorization` header's, else the query's `token`.
    static func token(in request: HTTPRequest) -> Substring? {
        if let header = request.headerFields[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            return parts.count == 2 && parts[0].lowercased() == "bearer" ? parts[1] : nil
        }
        guard let path = request.path, let question = path.firstIndex(of: "?") else { return nil }
        for pair in path[path.index(after: question)...].split(separator: "&") where pair.hasPrefix("token=") {
            let value = pair.dropFirst("token=".count)
            return value.removingPercentEncoding.map { Substring($0) } ?? value
        }
        return nil
    }
}

/// Refuses requests without a known token (401, with `WWW-Authenticate`); passes the role
/// on in the context, where the commands check it (403 for a radio command with `read`).
/// The status page's script and style are open to all.
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
        case .granted(let role):
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
