import Broker
import HTTPTypes
import Hummingbird
import NIOCore

/// The live status page (design.md §8): plain HTML, CSS and JavaScript compiled into the
/// binary. The page reads only the public API (`/api/commands`, `/ws`), like any client.
enum StatusPage {
    struct File {
        let bytes: [UInt8]
        let contentType: String
    }

    static let files: [String: File] = [
        "/": File(bytes: PackageResources.index_html, contentType: "text/html; charset=utf-8"),
        "/status.css": File(bytes: PackageResources.status_css, contentType: "text/css; charset=utf-8"),
        "/status.js": File(bytes: PackageResources.status_js, contentType: "text/javascript; charset=utf-8"),
        "/webserial.js": File(bytes: PackageResources.webserial_js, contentType: "text/javascript; charset=utf-8"),
    ]

    /// The page that lends a browser's serial port to a `webserial` slot (design.md §9).
    static let webSerialPage = File(bytes: PackageResources.webserial_html, contentType: "text/html; charset=utf-8")

    /// Only this host's scripts, styles and sockets; no framing by other sites; and no token
    /// from the page's address leaking in a `Referer`.
    static let policy = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

    /// The page's script and style: the same for everyone, holding no data.
    static func isAsset(_ path: String) -> Bool { path != "/" && files[path] != nil }

    static func add(to router: Router<GatewayContext>, broker: Broker) {
        for (path, file) in files {
            router.get(RouterPath(path)) { _, _ in response(file) }
        }
        router.get("/webserial/:slot") { _, context in
            let slot = context.parameters.get("slot") ?? ""
            guard broker.webSerialPort(slot: slot) != nil else {
                return HTTPGateway.reply(status: .notFound, code: "unknown_slot", message: "no webserial slot named '\(slot)'")
            }
            return response(webSerialPage)
        }
    }

    private static func response(_ file: File) -> Response {
        Response(
            status: .ok,
            headers: [
                .contentType: file.contentType, .cacheControl: "no-cache", .contentSecurityPolicy: policy,
                .xContentTypeOptions: "nosniff", HTTPField.Name("Referrer-Policy")!: "no-referrer",
            ],
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: file.bytes))
        )
    }
}
