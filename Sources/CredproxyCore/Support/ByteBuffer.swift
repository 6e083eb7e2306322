import Glibc

/// A growable byte queue over one malloc'd region: append at the end, consume from the front.
/// Each connection owns one for input and one for output, and each upstream transfer one for the
/// request body. Reading from a socket goes straight into spare capacity (no zero-fill, no copy).
final class ByteBuffer {
  private var base: UnsafeMutableRawPointer?
  private var capacity = 0
  private var start = 0
  private var end = 0

  init() {}

  deinit { free(base) }

  var count: Int { end - start }
  var isEmpty: Bool { start == end }

  func append(_ bytes: UnsafeRawBufferPointer) {
    guard bytes.count > 0 else { return }
    reserve(bytes.count)
    (base! + end).copyMemory(from: bytes.baseAddress!, byteCount: bytes.count)
    end += bytes.count
  }

  func append(_ bytes: [UInt8]) {
    bytes.withUnsafeBytes { append($0) }
  }

  func append(_ string: String) {
    var s = string
    s.withUTF8 { append(UnsafeRawBufferPointer($0)) }
  }

  func consume(_ n: Int) {
    precondition(n >= 0 && n <= count)
    start += n
    if start == end {
      start = 0
      end = 0
    }
  }

  /// Drops everything and gives large buffers' memory back (idle connections stay small).
  func reset() {
    start = 0
    end = 0
    if capacity > 64 * 1024 {
      free(base)
      base = nil
      capacity = 0
    }
  }

  /// Lets `producer` write up to `max` bytes into spare capacity (read(2), SSL_read); keeps what
  /// it reports written. Returns the producer's result.
  func fill(max: Int, _ producer: (UnsafeMutableRawPointer, Int) -> Int) -> Int {
    reserve(max)
    let n = producer(base! + end, max)
    if n > 0 { end += n }
    return n
  }

  /// Offers the readable bytes to `consumer` (write(2), SSL_write); consumes what it reports
  /// taken. Returns the consumer's result.
  func drain(_ consumer: (UnsafeRawPointer, Int) -> Int) -> Int {
    guard count > 0 else { return 0 }
    let n = consumer(base! + start, count)
    if n > 0 { consume(n) }
    return n
  }

  /// Copies up to `max` readable bytes to `dest` and consumes them.
  func take(into dest: UnsafeMutableRawPointer, max: Int) -> Int {
    let n = min(max, count)
    if n > 0 {
      dest.copyMemory(from: base! + start, byteCount: n)
      consume(n)
    }
    return n
  }

  func withReadableBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
    guard let base else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
    return try body(UnsafeRawBufferPointer(start: base + start, count: count))
  }

  private func reserve(_ extra: Int) {
    if end + extra <= capacity { return }
    // Slide unread bytes to the front first; grow only if that is not enough.
    if start > 0 {
      if count > 0 { memmove(base!, base! + start, count) }
      end -= start
      start = 0
      if end + extra <= capacity { return }
    }
    var newCapacity = Swift.max(capacity * 2, 4096)
    while newCapacity < end + extra { newCapacity *= 2 }
    base = realloc(base, newCapacity)
    precondition(base != nil, "out of memory")
    capacity = newCapacity
  }
}
