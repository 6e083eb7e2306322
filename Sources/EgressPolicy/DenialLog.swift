import Synchronization
import Wire

/// The most recent denials (default 50), for the status page. Thread-safe; recording is O(1).
public final class DenialLog: Sendable {
  public struct Entry: Sendable, Equatable {
    /// Seconds since the Unix epoch.
    public var time: Double
    public var client: String?
    public var host: String
    /// The error code or one line of why.
    public var reason: String

    public init(time: Double, client: String?, host: String, reason: String) {
      self.time = time
      self.client = client
      self.host = host
      self.reason = reason
    }

    public init(time: Double, client: String?, host: String, code: ErrorCode) {
      self.init(time: time, client: client, host: host, reason: code.rawValue)
    }
  }

  private struct Ring {
    var slots: [Entry?]
    var next = 0
    var count = 0
  }

  public let capacity: Int
  private let ring: Mutex<Ring>

  public init(capacity: Int = 50) {
    self.capacity = max(1, capacity)
    ring = Mutex(Ring(slots: [Entry?](repeating: nil, count: max(1, capacity))))
  }

  public func record(_ entry: Entry) {
    ring.withLock { r in
      r.slots[r.next] = entry
      r.next = (r.next + 1) % r.slots.count
      r.count = min(r.count + 1, r.slots.count)
    }
  }

  /// Newest first.
  public func recent() -> [Entry] {
    ring.withLock { r in
      var out: [Entry] = []
      out.reserveCapacity(r.count)
      for i in 0..<r.count {
        let index = (r.next - 1 - i + 2 * r.slots.count) % r.slots.count
        if let e = r.slots[index] { out.append(e) }
      }
      return out
    }
  }
}
