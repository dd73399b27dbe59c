/// Which signals a subscriber wants: sent to the bus as an `AddMatch` rule, and checked again
/// here because every subscription on a connection shares one stream of signals.
public struct DBusMatchRule: Hashable, Sendable, CustomStringConvertible {
    /// A well-known or unique name; the bus applies it (the signals carry the unique name).
    public var sender: String?
    public var interface: String?
    public var member: String?
    public var path: String?
    /// The path itself or any below it.
    public var pathNamespace: String?
    /// The first body value, when it is a string.
    public var arg0: String?

    public init(sender: String? = nil, interface: String? = nil, member: String? = nil, path: String? = nil, pathNamespace: String? = nil, arg0: String? = nil) {
        self.sender = sender
        self.interface = interface
        self.member = member
        self.path = path
        self.pathNamespace = pathNamespace
        self.arg0 = arg0
    }

    /// The rule in the bus's syntax: `type='signal',interface='…',…`.
    public var description: String {
        var parts = ["type='signal'"]
        func add(_ key: String, _ value: String?) {
            // Values are quoted; a quote inside is written as '\'' (never in names or paths).
            if let value { parts.append("\(key)='\(value.replacingOccurrences(of: "'", with: "'\\''"))'") }
        }
        add("sender", sender)
        add("interface", interface)
        add("member", member)
        add("path", path)
        add("path_namespace", pathNamespace)
        add("arg0", arg0)
        return parts.joined(separator: ",")
    }

    /// Whether `message` is a signal this rule lets through (sender aside).
    public func matches(_ message: DBusMessage) -> Bool {
        guard message.kind == .signal else { return false }
        if let interface, message.interface != interface { return false }
        if let member, message.member != member { return false }
        if let path, message.path != path { return false }
        if let pathNamespace, let messagePath = message.path {
            let inside = messagePath == pathNamespace || pathNamespace == "/" || messagePath.hasPrefix(pathNamespace + "/")
            if !inside { return false }
        }
        if let arg0, message.body.first != .string(arg0) { return false }
        return true
    }
}

extension String {
    fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}
