import Glibc

/// The addresses the per-request check (`CURLOPT_PREREQFUNCTION`) allowed lately, one table per
/// loop. On keep-alive traffic the same route, host and connection address come back request
/// after request, and parsing, canonicalising and classifying them again cost more than the rest
/// of the check. Only plain allows are kept (never a refusal, never report mode), keyed by
/// everything the verdict depends on: the route of one loaded config, the host as the caller
/// named it, whether a credential needs a loopback connection, and the address itself.
final class AddressVerdicts {
  struct Key: Equatable {
    /// `ProxyRuntime.generation` and the route's index: a reload never reuses a verdict.
    var route: DialCheck.RouteKey
    var host: String
    var loopbackOnly: Bool
  }

  private var entries: [(key: Key, address: [UInt8])] = []
  private var next = 0
  static let capacity = 16

  /// Whether `address` (the C string curl hands the callback) was allowed for `key`.
  func allows(_ address: UnsafePointer<CChar>, _ key: Key) -> Bool {
    let length = strlen(address)
    return entries.contains { entry in
      entry.address.count == length && entry.key == key
        && entry.address.withUnsafeBytes { memcmp($0.baseAddress!, address, length) == 0 }
    }
  }

  func remember(_ address: UnsafePointer<CChar>, _ key: Key) {
    let bytes = Array(UnsafeRawBufferPointer(start: address, count: strlen(address)))
    if entries.count < Self.capacity {
      entries.append((key, bytes))
    } else {
      entries[next] = (key, bytes)
      next = (next + 1) % Self.capacity
    }
  }
}
