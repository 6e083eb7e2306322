import Glibc

/// The few file operations the CA needs, on plain syscalls so that modes and errors are exact.
enum Files {
  static func errnoText(_ code: Int32 = errno) -> String { String(cString: strerror(code)) }

  static func exists(_ path: String) -> Bool {
    var st = stat()
    return lstat(path, &st) == 0
  }

  /// `mkdir -p` of `path`'s directory (new directories: mode 0755).
  static func makeParentDirectories(of path: String) throws(LocalCAError) {
    guard let slash = path.lastIndex(of: "/") else { return }
    let dir = String(path[..<slash])
    guard !dir.isEmpty else { return }
    var current = dir.hasPrefix("/") ? "" : "."
    for part in dir.split(separator: "/") {
      current += "/" + part
      if mkdir(current, 0o755) != 0 && errno != EEXIST {
        throw LocalCAError("cannot create directory \(current): \(errnoText())")
      }
    }
  }

  /// Creates `path` (it must not exist: `O_CREAT|O_EXCL`, no symlink followed) with `mode` from the
  /// start, and writes `contents`.
  static func createExclusive(_ path: String, mode: mode_t, contents: [UInt8]) throws(LocalCAError)
  {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
    guard fd >= 0 else { throw LocalCAError("cannot create \(path): \(errnoText())") }
    var written = 0
    var failure: Int32 = 0
    contents.withUnsafeBytes { buf in
      while written < buf.count {
        let n = Glibc.write(fd, buf.baseAddress! + written, buf.count - written)
        if n < 0 {
          if errno == EINTR { continue }
          failure = errno
          return
        }
        written += n
      }
    }
    if failure == 0 && fsync(fd) != 0 { failure = errno }
    close(fd)
    if failure != 0 {
      unlink(path)
      throw LocalCAError("cannot write \(path): \(errnoText(failure))")
    }
  }

  /// Writes `path` through a temporary file and a rename (readers never see half a file).
  static func replace(_ path: String, mode: mode_t, contents: [UInt8]) throws(LocalCAError) {
    try makeParentDirectories(of: path)
    let temp = path + ".tmp.\(getpid())"
    unlink(temp)
    try createExclusive(temp, mode: mode, contents: contents)
    guard rename(temp, path) == 0 else {
      let code = errno
      unlink(temp)
      throw LocalCAError("cannot write \(path): \(errnoText(code))")
    }
  }

  /// The whole file; `what` names it in errors ("CA key (ca-key)").
  static func read(_ path: String, what: String) throws(LocalCAError) -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { throw LocalCAError("\(what) \(path): cannot read: \(errnoText())") }
    defer { close(fd) }
    var st = stat()
    if fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR {
      throw LocalCAError("\(what) \(path): cannot read: it is a directory")
    }
    var out: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16_384)
    while true {
      let n = Glibc.read(fd, &chunk, chunk.count)
      if n < 0 {
        if errno == EINTR { continue }
        throw LocalCAError("\(what) \(path): cannot read: \(errnoText())")
      }
      if n == 0 { break }
      out += chunk[..<n]
      if out.count > 1 << 20 { throw LocalCAError("\(what) \(path): larger than 1 MiB") }
    }
    SSLSupport.cleanse(&chunk)
    return out
  }
}
