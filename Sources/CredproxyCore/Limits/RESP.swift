/// The Redis serialization protocol (RESP2), the part a client needs: commands out as arrays of
/// bulk strings, replies in, parsed incrementally from whatever bytes have arrived.
enum RESPValue: Equatable {
  case simple(String)
  case error(String)
  case integer(Int64)
  /// nil: the null bulk string.
  case bulk([UInt8]?)
  /// nil: the null array.
  indirect case array([RESPValue]?)

  var integer: Int64? {
    if case .integer(let n) = self { return n }
    return nil
  }

  var text: String? {
    switch self {
    case .simple(let s): return s
    case .bulk(let b?): return String(decoding: b, as: UTF8.self)
    default: return nil
    }
  }
}

enum RESP {
  /// `*N\r\n$len\r\narg\r\n…`: binary-safe, so keys may hold any byte.
  static func command(_ args: [String]) -> [UInt8] {
    var out: [UInt8] = Array("*\(args.count)\r\n".utf8)
    for arg in args {
      let bytes = Array(arg.utf8)
      out += Array("$\(bytes.count)\r\n".utf8)
      out += bytes
      out += [0x0D, 0x0A]
    }
    return out
  }

  struct ProtocolError: Error, Equatable {
    let message: String
  }

  /// Incremental reply parser. Bounded: a server cannot make it hold more than `maxBulk` bytes in
  /// one string, `maxElements` in one array, arrays nested deeper than `maxDepth` (each level is
  /// one recursion), or more than `maxBuffered` bytes of a reply not yet complete. Our script's
  /// answers are a few small integers.
  struct Reader {
    private(set) var buffer: [UInt8] = []
    private var start = 0
    static let maxBulk = 1 << 20
    static let maxElements = 4096
    static let maxDepth = 8
    static let maxBuffered = 4 << 20

    /// Bytes received and not yet returned as replies.
    var unparsedCount: Int { buffer.count - start }

    mutating func append(_ bytes: UnsafeRawBufferPointer) { buffer.append(contentsOf: bytes) }
    mutating func append(_ bytes: [UInt8]) { buffer.append(contentsOf: bytes) }

    /// The next complete reply, or nil until more bytes arrive.
    mutating func next() throws(ProtocolError) -> RESPValue? {
      var cursor = start
      guard let value = try parse(&cursor, depth: 0) else {
        if unparsedCount > Self.maxBuffered {
          throw ProtocolError(message: "reply larger than \(Self.maxBuffered) bytes")
        }
        return nil
      }
      start = cursor
      if start > 4096 && start * 2 > buffer.count {
        buffer.removeFirst(start)
        start = 0
      }
      return value
    }

    private func line(_ cursor: inout Int) -> String? {
      var i = cursor
      while i + 1 < buffer.count {
        if buffer[i] == 0x0D && buffer[i + 1] == 0x0A {
          let text = String(decoding: buffer[cursor..<i], as: UTF8.self)
          cursor = i + 2
          return text
        }
        i += 1
      }
      return nil
    }

    private func parse(_ cursor: inout Int, depth: Int) throws(ProtocolError) -> RESPValue? {
      guard depth <= Self.maxDepth else {
        throw ProtocolError(message: "arrays nested deeper than \(Self.maxDepth)")
      }
      guard cursor < buffer.count else { return nil }
      let kind = buffer[cursor]
      var c = cursor + 1
      guard let head = line(&c) else {
        if buffer.count - cursor > 64 * 1024 { throw ProtocolError(message: "reply line too long") }
        return nil
      }
      switch kind {
      case UInt8(ascii: "+"):
        cursor = c
        return .simple(head)
      case UInt8(ascii: "-"):
        cursor = c
        return .error(head)
      case UInt8(ascii: ":"):
        guard let n = Int64(head) else { throw ProtocolError(message: "bad integer \(head)") }
        cursor = c
        return .integer(n)
      case UInt8(ascii: "$"):
        guard let n = Int(head), n >= -1, n <= Self.maxBulk else {
          throw ProtocolError(message: "bad bulk length \(head)")
        }
        if n == -1 {
          cursor = c
          return .bulk(nil)
        }
        guard buffer.count >= c + n + 2 else { return nil }
        guard buffer[c + n] == 0x0D, buffer[c + n + 1] == 0x0A else {
          throw ProtocolError(message: "bulk string not terminated")
        }
        let bytes = Array(buffer[c..<c + n])
        cursor = c + n + 2
        return .bulk(bytes)
      case UInt8(ascii: "*"):
        guard let n = Int(head), n >= -1, n <= Self.maxElements else {
          throw ProtocolError(message: "bad array length \(head)")
        }
        if n == -1 {
          cursor = c
          return .array(nil)
        }
        var items: [RESPValue] = []
        items.reserveCapacity(n)
        for _ in 0..<n {
          guard let item = try parse(&c, depth: depth + 1) else { return nil }
          items.append(item)
        }
        cursor = c
        return .array(items)
      default:
        throw ProtocolError(message: "unknown reply type \(kind)")
      }
    }
  }
}
