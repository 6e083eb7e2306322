import Foundation
import Glibc

/// `serve --watch-config`: reloads when the config file changes, without a signal.
///
/// inotify watches the file's directory, not the file: editors replace a file by renaming a new
/// one over it, and a Kubernetes ConfigMap volume swaps a `..data` symlink, so a watch on the
/// old inode would go quiet. When the path is a symlink, the directory of every hop to the file
/// is watched too (a link in /etc to a volume mounted elsewhere changes there), re-walked after
/// each change since a swap can lead through a directory that did not exist. `settleMs` after
/// the first event of a batch (so a file written in several steps is read whole) the file's
/// bytes are compared with the last ones seen; only a real change raises SIGHUP at this process,
/// so the reload takes exactly the path `kill -HUP` takes (the main thread's sigwait). The
/// thread inherits the blocked signal mask of `serve`.
final class ConfigWatcher: @unchecked Sendable {
  static let settleMs: Int32 = 250
  let path: String
  private var last: [UInt8]?
  private let fd: Int32

  init(path: String) throws(WatchError) {
    self.path = path
    fd = inotify_init1(Int32(IN_CLOEXEC))
    guard fd >= 0 else {
      throw WatchError(message: "inotify_init1: \(String(cString: strerror(errno)))")
    }
    let directory = Self.directory(of: path)
    guard inotify_add_watch(fd, directory, Self.mask) >= 0 else {
      let why = String(cString: strerror(errno))
      close(fd)
      throw WatchError(message: "cannot watch \(directory): \(why)")
    }
    watchLinkedDirectories()
    last = Self.contents(path)
  }

  static let mask =
    UInt32(IN_CLOSE_WRITE) | UInt32(IN_MOVED_TO) | UInt32(IN_CREATE) | UInt32(IN_DELETE)
    | UInt32(IN_MODIFY) | UInt32(IN_ATTRIB)

  static func directory(of path: String) -> String {
    let d = (path as NSString).deletingLastPathComponent
    return d.isEmpty ? "." : d
  }

  /// Adds a watch on the directory each symlink on the way to the file points into (adding one
  /// that exists is a no-op; a deleted directory's watch goes by itself).
  private func watchLinkedDirectories() {
    var current = path
    for _ in 0..<40 {  // ELOOP's limit
      guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: current)
      else { return }
      current =
        target.hasPrefix("/")
        ? target : (Self.directory(of: current) as NSString).appendingPathComponent(target)
      _ = inotify_add_watch(fd, Self.directory(of: current), Self.mask)
    }
  }

  struct WatchError: Error { var message: String }

  static func nowMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
  }

  static func contents(_ path: String) -> [UInt8]? {
    FileManager.default.contents(atPath: path).map { Array($0) }
  }

  func start() {
    let thread = Thread { [self] in self.run() }
    thread.name = "config-watch"
    thread.start()
  }

  private func run() {
    var buffer = [UInt8](repeating: 0, count: 64 * 1024)
    // When the first event of a batch came; the file is compared `settleMs` after it. Not
    // pushed back by later events: a log written in the same directory would starve it.
    var firstEvent: Int64?
    while true {
      var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      var wait: Int32 = -1
      if let firstEvent { wait = Int32(max(0, firstEvent + Int64(Self.settleMs) - Self.nowMs())) }
      let n = poll(&p, 1, wait)
      if n < 0 {
        if errno == EINTR { continue }
        log("config watch stopped: poll: \(String(cString: strerror(errno)))")
        return
      }
      if n > 0 {
        // The events only say "something in the directory changed": drain them.
        _ = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if firstEvent == nil { firstEvent = Self.nowMs() }
        if Self.nowMs() < firstEvent! + Int64(Self.settleMs) { continue }
      }
      firstEvent = nil
      watchLinkedDirectories()
      let now = Self.contents(path)
      guard let now, now != last else { continue }
      last = now
      log("\(path) changed; reloading")
      kill(getpid(), SIGHUP)
    }
  }
}
