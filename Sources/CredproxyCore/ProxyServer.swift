import CCurl
import CSystem
import CredproxyConfig
import Foundation
import Glibc

/// The running proxy: binds the listeners, starts one event loop thread per core, and stops them.
public final class ProxyServer: @unchecked Sendable {
  private let runtime: ProxyRuntime
  let broker: TokenBroker
  private let loopCount: Int
  private var loops: [EventLoop] = []
  private let finished = DispatchGroup()
  /// `host:port` of every bound listener, in config order (ports resolved when 0 was asked for).
  public private(set) var boundAddresses: [String] = []

  public init(
    config: ProxyConfig, environment: [String: String] = ProcessInfo.processInfo.environment,
    loopCount: Int = ProcessInfo.processInfo.activeProcessorCount
  ) throws {
    do {
      runtime = try ProxyRuntime(config: config, environment: environment)
      broker = TokenBroker(credentials: runtime.credentials)
    } catch {
      throw ServerError(message: error.description)
    }
    self.loopCount = max(1, loopCount)
  }

  /// Process-wide set-up that must happen before any thread runs curl.
  public static func prepareProcess() {
    curl_global_init(CP_GLOBAL_DEFAULT)
    signal(SIGPIPE, SIG_IGN)
    // Each client and upstream connection is a descriptor: allow as many as the hard limit does.
    var limit = rlimit()
    if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 && limit.rlim_cur < limit.rlim_max {
      limit.rlim_cur = limit.rlim_max
      setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
  }

  public func start() throws {
    // Every loop gets its own socket per listener (SO_REUSEPORT); a requested port 0 is resolved
    // by the first bind and reused by the rest, so all loops share one port.
    var perLoop = Array(repeating: [Int32](), count: loopCount)
    for address in runtime.config.listeners {
      var port = address.port
      for i in 0..<loopCount {
        do {
          let bound = try Socket.listen(host: address.host, port: port)
          port = bound.port
          perLoop[i].append(bound.fd)
        } catch {
          throw ServerError(message: error.description)
        }
      }
      let shown =
        address.host.contains(":") ? "[\(address.host)]:\(port)" : "\(address.host):\(port)"
      boundAddresses.append(shown)
    }
    for i in 0..<loopCount {
      let loop = EventLoop(index: i)
      loops.append(loop)
      let fds = perLoop[i]
      let runtime = self.runtime
      let broker = self.broker
      finished.enter()
      let thread = Thread { [finished] in
        let context = LoopContext(loop: loop, runtime: runtime, broker: broker, listenFDs: fds)
        loop.run()
        withExtendedLifetime(context) {}
        finished.leave()
      }
      thread.name = "credproxy-loop-\(i)"
      thread.start()
    }
  }

  /// Stops every loop and waits for their threads.
  public func stop() {
    for loop in loops { loop.stop() }
    finished.wait()
  }
}

public struct ServerError: Error, CustomStringConvertible {
  public var message: String
  public var description: String { message }
}
