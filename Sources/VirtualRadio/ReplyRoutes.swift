/// Where replies to virtual clients' packets go: the radio answers a packet (Routing ACK or
/// NAK, an admin or traceroute response) with `request_id` = the id the packet went out
/// with, which MeshBus may have changed to keep ids unique across clients. A route maps
/// that id back to the client and to the id the client chose.
struct ReplyRoutes<Instant: InstantProtocol> {
    struct Route: Equatable {
        var client: Int
        var clientPacketID: UInt32
        var expires: Instant
    }

    /// Routes held at most; the oldest go first.
    let capacity: Int
    /// How long a route waits for its replies (an ACK can take minutes on a busy mesh).
    let lifetime: Instant.Duration
    private var routes: [UInt32: Route] = [:]
    private var order: [UInt32] = []

    init(capacity: Int = 4096, lifetime: Instant.Duration) {
        self.capacity = capacity
        self.lifetime = lifetime
    }

    var count: Int { routes.count }

    /// Remembers that the radio knows a client's packet as `radioPacketID`.
    mutating func add(radioPacketID: UInt32, client: Int, clientPacketID: UInt32, now: Instant) {
        prune(now: now)
        if routes.count >= capacity, let oldest = order.first {
            routes[oldest] = nil
            order.removeFirst()
        }
        if routes.updateValue(Route(client: client, clientPacketID: clientPacketID, expires: now.advanced(by: lifetime)), forKey: radioPacketID) == nil {
            order.append(radioPacketID)
        }
    }

    /// Forgets the route of `radioPacketID` (its packet never went out with that id).
    mutating func remove(radioPacketID: UInt32) {
        guard routes.removeValue(forKey: radioPacketID) != nil else { return }
        order.removeAll { $0 == radioPacketID }
    }

    /// The route for a reply's `request_id`, if a client's packet went out with that id.
    /// Routes stay until they expire: one packet can get several replies (ACK and response),
    /// and a reply for a client that has left is still recognised (and dropped).
    func route(requestID: UInt32, now: Instant) -> Route? {
        guard let route = routes[requestID], route.expires > now else { return nil }
        return route
    }

    private mutating func prune(now: Instant) {
        while let oldest = order.first, let route = routes[oldest], route.expires <= now {
            routes[oldest] = nil
            order.removeFirst()
        }
    }
}
