import DBus
import Logging
import MeshtasticProtocol
import NIOCore

/// Moves one BLE session's traffic between the link's framed channel and the radio's GATT
/// characteristics: each ToRadio frame becomes a write with response, then FromRadio is read
/// until empty; each FromNum notification also reads until empty. One access at a time (BlueZ
/// answers concurrent writes with `InProgress`, and concurrent reads of one characteristic with
/// the same value). Ends, closing its end of the channel, when the link closes its end or the
/// radio is gone; the link then sees its channel close.
struct GATTPump: Sendable {
    let bus: DBusConnection
    let profile: BLESession.Profile
    let device: String
    let accessTimeout: Duration
    let logger: Logger

    private enum Event: Sendable {
        case toRadio([UInt8])
        case fromNum
        case linkClosed
        case radioGone(String)
    }

    func run(_ channel: StreamChannel, changes: AsyncStream<DBusMessage>, removed: AsyncStream<DBusMessage>) async {
        try? await channel.executeThenClose { inbound, outbound in
            let (events, feed) = AsyncStream<Event>.makeStream()
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        for try await item in inbound {
                            // Only frames: the wake-up bytes before the first are no ToRadio.
                            if case .frame(let payload) = item { feed.yield(.toRadio(Array(payload.readableBytesView))) }
                        }
                    } catch {}
                    feed.yield(.linkClosed)
                }
                group.addTask {
                    for await change in changes {
                        guard change.body.count >= 2, let interface = change.body[0].string else { continue }
                        let properties = change.body[1].dictionary ?? [:]
                        if change.path == device, interface == BlueZ.device, properties["Connected"]?.bool == false {
                            feed.yield(.radioGone("BlueZ reported the link down"))
                        } else if change.path == profile.fromNum, interface == BlueZ.characteristic, properties["Value"] != nil {
                            feed.yield(.fromNum)
                        }
                    }
                }
                group.addTask {
                    for await removal in removed {
                        guard let path = removal.body.first?.string, path == device || profile.fromRadio.hasPrefix(path + "/") || path == profile.fromRadio else { continue }
                        feed.yield(.radioGone("BlueZ removed the device"))
                    }
                }
                var last: [UInt8]?
                consume: for await event in events {
                    switch event {
                    case .toRadio(let bytes):
                        if bytes == last { logger.debug("ToRadio repeats the previous write; the firmware will drop it", metadata: ["device": "\(device)"]) }
                        last = bytes
                        guard await write(bytes), await drain(into: outbound) else { break consume }
                    case .fromNum:
                        guard await drain(into: outbound) else { break consume }
                    case .linkClosed:
                        break consume
                    case .radioGone(let why):
                        logger.info("BLE link lost", metadata: ["device": "\(device)", "why": "\(why)"])
                        break consume
                    }
                }
                group.cancelAll()
            }
        }
    }

    /// Writes one ToRadio; false when the radio is gone.
    private func write(_ bytes: [UInt8]) async -> Bool {
        await access("write") {
            try await bus.call(
                .methodCall(destination: BlueZ.bus, path: profile.toRadio, interface: BlueZ.characteristic, member: "WriteValue",
                    body: [.bytes(bytes), .properties(["type": .string("request")])]),
                timeout: accessTimeout)
        } != nil
    }

    /// Reads FromRadio until it is empty, each message a frame to the link; false when the
    /// radio or the link is gone.
    private func drain(into outbound: NIOAsyncChannelOutboundWriter<StreamOutbound>) async -> Bool {
        while true {
            guard let reply = await access("read", {
                try await bus.call(
                    .methodCall(destination: BlueZ.bus, path: profile.fromRadio, interface: BlueZ.characteristic, member: "ReadValue", body: [.properties([:])]),
                    timeout: accessTimeout)
            }) else { return false }
            guard let value = reply.first?.bytes, !value.isEmpty else { return true }
            do {
                try await outbound.write(.frame(ByteBuffer(bytes: value)))
            } catch {
                return false
            }
        }
    }

    /// One GATT call: its reply; `[]` when it went unanswered (a stalled radio: the link's
    /// probes decide); nil when the radio is gone or the session is over.
    private func access(_ what: String, _ call: () async throws -> [DBusValue]) async -> [DBusValue]? {
        do {
            return try await call()
        } catch let error as DBusError where error.name == DBusError.noReply {
            logger.debug("GATT \(what) unanswered", metadata: ["device": "\(device)"])
            return []
        } catch let error as DBusError {
            logger.info("GATT \(what) failed; the BLE link is lost", metadata: ["device": "\(device)", "error": "\(error)"])
            return nil
        } catch {
            return nil
        }
    }
}
