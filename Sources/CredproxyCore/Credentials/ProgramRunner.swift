import CSystem
import Dispatch
import Foundation
import Glibc

/// Runs a credential program (`source exec`, an `external_account` executable): no shell, stdin
/// from /dev/null, stdout captured up to a cap, stderr discarded (it may hold anything, and
/// nothing a program prints is ever logged), a small environment, every inherited descriptor
/// closed, signals back to their defaults, and its own process group, killed whole on timeout.
///
/// `run` blocks; `start` runs it on a Dispatch worker thread and hands the outcome back on the
/// event loop, so an event loop never waits for a program.
enum ProgramRunner {
  /// How the program ended.
  enum Termination: Sendable, Equatable, CustomStringConvertible {
    case exited(Int32)
    case signaled(Int32)
    /// Killed at the deadline.
    case timedOut(ms: Int)
    /// Killed: wrote more than `maxOutput` bytes.
    case outputTooLarge
    /// Never ran (not found, not executable, no resources).
    case spawnFailed(String)

    /// Says how it ended, never what it printed.
    var description: String {
      switch self {
      case .exited(let status): return "exited with status \(status)"
      case .signaled(let signal): return "was killed by signal \(signal)"
      case .timedOut(let ms): return "timed out after \(Self.seconds(ms)) and was killed"
      case .outputTooLarge:
        return "printed more than \(ProgramRunner.maxOutput) bytes and was killed"
      case .spawnFailed(let why): return "could not be started: \(why)"
      }
    }

    private static func seconds(_ ms: Int) -> String {
      ms % 1000 == 0 ? "\(ms / 1000) s" : "\(ms) ms"
    }
  }

  struct Outcome: Sendable {
    var termination: Termination
    var stdout: [UInt8]
    var succeeded: Bool { termination == .exited(0) }
  }

  static let maxOutput = 1 << 20

  /// The variables a program inherits from credproxy's environment; nothing else (credproxy's
  /// own secrets often live in its environment).
  static let inheritedVariables = [
    "PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR",
  ]

  static func smallEnvironment(from environment: [String: String]) -> [String: String] {
    var out: [String: String] = [:]
    for name in inheritedVariables {
      if let value = environment[name] { out[name] = value }
    }
    if out["PATH"] == nil { out["PATH"] = "/usr/local/bin:/usr/bin:/bin" }
    return out
  }

  /// The executable `program` names: a path as is, a bare name searched in `searchPath`.
  /// Returns the path, or nil (`notRunnable` says why).
  static func locate(_ program: String, searchPath: String?) -> String? {
    if program.contains("/") {
      return access(program, X_OK) == 0 && !isDirectory(program) ? program : nil
    }
    let dirs = (searchPath ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":")
    for dir in dirs where !dir.isEmpty {
      let candidate = "\(dir)/\(program)"
      if access(candidate, X_OK) == 0 && !isDirectory(candidate) { return candidate }
    }
    return nil
  }

  static func notRunnable(_ program: String) -> String {
    program.contains("/")
      ? "program \(program) is not an executable file" : "program \(program) was not found in PATH"
  }

  private static func isDirectory(_ path: String) -> Bool {
    var isDir: ObjCBool = false
    return FileManager.default.fileExists(atPath: path, isDirectory: &isDir) && isDir.boolValue
  }

  /// Runs the program on a worker thread; `completion` runs on `loop`.
  static func start(
    path: String, arguments: [String], environment: [String: String], timeoutMs: Int,
    loop: EventLoop, completion: @escaping (Outcome) -> Void
  ) {
    let resume = LoopBound(loop: loop, completion)
    DispatchQueue.global().async {
      let outcome = run(
        path: path, arguments: arguments, environment: environment, timeoutMs: timeoutMs)
      loop.execute { resume.value(outcome) }
    }
  }

  /// Blocking: never call it on an event loop.
  static func run(
    path: String, arguments: [String], environment: [String: String], timeoutMs: Int
  ) -> Outcome {
    var fds: [Int32] = [-1, -1]
    guard pipe2(&fds, O_CLOEXEC) == 0 else {
      return Outcome(termination: .spawnFailed("pipe: \(errnoText(errno))"), stdout: [])
    }
    let (readFD, writeFD) = (fds[0], fds[1])

    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    defer { posix_spawnattr_destroy(&attributes) }

    var checks: [Int32] = [
      posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0),
      posix_spawn_file_actions_adddup2(&actions, writeFD, 1),
      posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0),
      posix_spawn_file_actions_addclosefrom_np(&actions, 3),
    ]
    // The proxy blocks SIGTERM/SIGINT/SIGHUP in every thread (sigwait): the program must not
    // inherit that mask, or it could not be stopped.
    var noSignals = sigset_t()
    sigemptyset(&noSignals)
    var defaults = sigset_t()
    sigemptyset(&defaults)
    for signal in [SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGCHLD, SIGUSR1, SIGUSR2] {
      sigaddset(&defaults, signal)
    }
    checks.append(posix_spawnattr_setsigmask(&attributes, &noSignals))
    checks.append(posix_spawnattr_setsigdefault(&attributes, &defaults))
    checks.append(posix_spawnattr_setpgroup(&attributes, 0))
    checks.append(
      posix_spawnattr_setflags(
        &attributes,
        Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETPGROUP)))
    if let failed = checks.first(where: { $0 != 0 }) {
      close(readFD)
      close(writeFD)
      return Outcome(
        termination: .spawnFailed("posix_spawn setup: \(errnoText(failed))"), stdout: [])
    }

    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let envp =
      environment.sorted { $0.key < $1.key }.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
      for p in argv { free(p) }
      for p in envp { free(p) }
    }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, &actions, &attributes, argv, envp)
    close(writeFD)
    guard spawned == 0 else {
      close(readFD)
      return Outcome(termination: .spawnFailed(errnoText(spawned)), stdout: [])
    }

    let deadline = monotonicMs() + timeoutMs
    var output: [UInt8] = []
    var killedFor: Termination?
    var buffer = [UInt8](repeating: 0, count: 16_384)
    reading: while true {
      let left = deadline - monotonicMs()
      if left <= 0 {
        killedFor = .timedOut(ms: timeoutMs)
        break
      }
      var p = pollfd(fd: readFD, events: Int16(POLLIN), revents: 0)
      let ready = poll(&p, 1, Int32(min(left, 1_000)))
      if ready < 0 && errno == EINTR { continue }
      if ready <= 0 { continue }
      let n = buffer.withUnsafeMutableBytes { read(readFD, $0.baseAddress, $0.count) }
      if n < 0 {
        if errno == EINTR || errno == EAGAIN { continue }
        break reading
      }
      if n == 0 { break reading }
      output.append(contentsOf: buffer[0..<n])
      if output.count > maxOutput {
        killedFor = .outputTooLarge
        break
      }
    }
    close(readFD)

    if killedFor == nil {
      // stdout is closed; give the program until the deadline to exit.
      while true {
        var status: Int32 = 0
        let r = waitpid(pid, &status, WNOHANG)
        if r == pid { return Outcome(termination: termination(status), stdout: output) }
        if r < 0 && errno != EINTR {
          return Outcome(termination: .spawnFailed("waitpid: \(errnoText(errno))"), stdout: output)
        }
        if monotonicMs() >= deadline {
          killedFor = .timedOut(ms: timeoutMs)
          break
        }
        usleep(2_000)
      }
    }
    kill(-pid, SIGKILL)
    kill(pid, SIGKILL)
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return Outcome(termination: killedFor!, stdout: [])
  }

  private static func termination(_ status: Int32) -> Termination {
    let signal = status & 0x7f
    if signal == 0 { return .exited((status >> 8) & 0xff) }
    return .signaled(signal)
  }

  private static func monotonicMs() -> Int {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec * 1000 + ts.tv_nsec / 1_000_000
  }

  private static func errnoText(_ code: Int32) -> String { String(cString: strerror(code)) }
}
