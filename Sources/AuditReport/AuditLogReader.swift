import CZlib
import Glibc

/// Why an audit log could not be read to its end.
public struct AuditReadError: Error, CustomStringConvertible, Sendable {
  public var path: String
  public var message: String
  public var description: String { "\(path): \(message)" }
}

/// Reads an audit log line by line in fixed-size chunks, so memory stays flat however large the
/// file. A file starting with the gzip magic bytes is inflated as it is read (zlib; rotated logs
/// compressed by logrotate, also several gzip members one after another); the file name does not
/// matter. A line longer than `maxLineBytes` is skipped and counted, not kept.
public struct AuditLogReader {
  public static let chunkBytes = 256 * 1024
  public static let maxLineBytes = 1 << 20

  /// Lines given to `body` (without the newline) and lines skipped for being too long.
  public struct Counts: Sendable, Equatable {
    public var lines = 0
    public var tooLong = 0
    public var bytes: UInt64 = 0
    /// The number of the first line skipped for being too long.
    public var firstTooLong: Int?
  }

  public static func forEachLine(
    path: String, _ body: (UnsafeBufferPointer<UInt8>) -> Void
  ) throws(AuditReadError) -> Counts {
    try forEachNumberedLine(path: path) { line, _ in body(line) }
  }

  /// `forEachLine`, with each line's 1-based number in the file (empty and overlong lines
  /// count too), so a report can say where a line it could not read is.
  public static func forEachNumberedLine(
    path: String, _ body: (UnsafeBufferPointer<UInt8>, Int) -> Void
  ) throws(AuditReadError) -> Counts {
    let fd = path == "-" ? dup(0) : open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else {
      throw AuditReadError(path: path, message: String(cString: strerror(errno)))
    }
    defer { close(fd) }
    var lines = LineAssembler()
    let input = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: chunkBytes)
    defer { input.deallocate() }
    var count = try readSome(fd, input, path: path)
    if count >= 2 && input[0] == 0x1F && input[1] == 0x8B {
      try inflateAll(fd: fd, path: path, input: input, firstCount: count, into: &lines, body)
    } else {
      while count > 0 {
        lines.feed(UnsafeBufferPointer(rebasing: input[0..<count]), body)
        count = try readSome(fd, input, path: path)
      }
    }
    lines.finish(body)
    return lines.counts
  }

  static func readSome(_ fd: Int32, _ buffer: UnsafeMutableBufferPointer<UInt8>, path: String)
    throws(AuditReadError) -> Int
  {
    while true {
      let n = read(fd, buffer.baseAddress, buffer.count)
      if n >= 0 { return n }
      if errno == EINTR { continue }
      throw AuditReadError(path: path, message: String(cString: strerror(errno)))
    }
  }

  static func inflateAll(
    fd: Int32, path: String, input: UnsafeMutableBufferPointer<UInt8>, firstCount: Int,
    into lines: inout LineAssembler, _ body: LineAssembler.Body
  ) throws(AuditReadError) {
    let output = UnsafeMutableBufferPointer<UInt8>.allocate(capacity: chunkBytes)
    defer { output.deallocate() }
    var stream = z_stream()
    guard cp_inflate_init_auto(&stream) == Z_OK else {
      throw AuditReadError(path: path, message: "zlib could not start inflating")
    }
    defer { inflateEnd(&stream) }
    stream.next_in = input.baseAddress
    stream.avail_in = UInt32(firstCount)
    var atMemberEnd = false
    while true {
      if stream.avail_in == 0 {
        let n = try readSome(fd, input, path: path)
        if n == 0 {
          if atMemberEnd { return }
          throw AuditReadError(
            path: path, message: "gzip data ends early (truncated, or still being compressed)")
        }
        stream.next_in = input.baseAddress
        stream.avail_in = UInt32(n)
      }
      if atMemberEnd {
        // Another gzip member follows (`cat a.gz b.gz`): start over on it.
        guard inflateReset(&stream) == Z_OK else {
          throw AuditReadError(path: path, message: "zlib could not reset")
        }
        atMemberEnd = false
      }
      stream.next_out = output.baseAddress
      stream.avail_out = UInt32(output.count)
      let rc = inflate(&stream, Z_NO_FLUSH)
      let produced = output.count - Int(stream.avail_out)
      if produced > 0 { lines.feed(UnsafeBufferPointer(rebasing: output[0..<produced]), body) }
      switch rc {
      case Z_OK, Z_BUF_ERROR:
        continue
      case Z_STREAM_END:
        atMemberEnd = true
      default:
        let why = stream.msg.map { String(cString: $0) } ?? "error \(rc)"
        throw AuditReadError(path: path, message: "not valid gzip data: \(why)")
      }
    }
  }
}

/// Splits chunks into lines. A line within one chunk is passed straight from the chunk; only a
/// line that spans chunks is copied, into one reused buffer.
struct LineAssembler {
  typealias Body = (UnsafeBufferPointer<UInt8>, Int) -> Void
  var carry: [UInt8] = []
  var skipping = false
  var counts = AuditLogReader.Counts()
  /// Lines ended so far (the number of the line being ended, once incremented).
  var lineNumber = 0

  mutating func feed(_ chunk: UnsafeBufferPointer<UInt8>, _ body: Body) {
    counts.bytes += UInt64(chunk.count)
    var start = 0
    while start < chunk.count {
      guard let nl = chunk[start...].firstIndex(of: 0x0A) else {
        append(UnsafeBufferPointer(rebasing: chunk[start...]))
        return
      }
      if carry.isEmpty && !skipping {
        emit(UnsafeBufferPointer(rebasing: chunk[start..<nl]), body)
      } else {
        append(UnsafeBufferPointer(rebasing: chunk[start..<nl]))
        endCarried(body)
      }
      start = nl + 1
    }
  }

  mutating func finish(_ body: Body) {
    if !carry.isEmpty || skipping { endCarried(body) }
  }

  private mutating func append(_ part: UnsafeBufferPointer<UInt8>) {
    guard !skipping else { return }
    if carry.count + part.count > AuditLogReader.maxLineBytes {
      skipping = true
      carry.removeAll(keepingCapacity: false)
      return
    }
    carry.append(contentsOf: part)
  }

  private mutating func endCarried(_ body: Body) {
    if skipping {
      lineNumber += 1
      counts.tooLong += 1
      if counts.firstTooLong == nil { counts.firstTooLong = lineNumber }
      skipping = false
    } else {
      let line = carry
      line.withUnsafeBufferPointer { emit($0, body) }
    }
    carry.removeAll(keepingCapacity: true)
  }

  private mutating func emit(_ line: UnsafeBufferPointer<UInt8>, _ body: Body) {
    lineNumber += 1
    var line = line
    if let last = line.last, last == 0x0D { line = UnsafeBufferPointer(rebasing: line.dropLast()) }
    guard !line.isEmpty else { return }
    counts.lines += 1
    body(line, lineNumber)
  }
}
