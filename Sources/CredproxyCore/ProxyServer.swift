import CCurl
import CSystem
import CredproxyConfig
import EgressPolicy
import Foundation
import Glibc
import Synchronization
import Wire

/// The running proxy: binds the listeners, starts one event loop thread per core, and stops them.
/// Driven from one thread (the CLI's main thread: start, reload on SIGHUP, drain on SIGTERM); it
/// reaches each loop's state only through `EventLoop.execute`.
public final class ProxyServer {
  private var runtime: ProxyRuntime
  let broker: TokenBroker
  let denials = DenialLog()
  private var contexts: [LoopBound<LoopContext>] = []
  private var openCounts: [OpenConnectionCount] = []
  private let loopCount: Int
  private var loops: [EventLoop] = []
  private let finished = DispatchGroup()
  /// `host:port` of every bound listener, in config order (ports resolved when 0 was asked for).
  public private(set) var boundAddresses: [String] = []
  /// `host:port` of the admin listener, if the config has one.
  public private(set) var adminAddress: String?
  private let state: ProxyState
  private var admin: LoopBound<AdminListener>?
  /// `host:port` of the metadata-server stub, if the config has one.
  public private(set) var metadataAddress: String?
  private var metadata: LoopBound<MetadataListener>?
  /// The bound `listen … tls` listeners' contexts, which a reload renews from the files.
  private var tlsListeners: [(address: ListenAddress, slot: ListenerTLSSlot)] = []

  public init(
    config: ProxyConfig, environment: [String: String] = ProcessInfo.processInfo.environment,
    loopCount: Int = ProcessInfo.processInfo.activeProcessorCount
  ) throws {
    let first: ProxyRuntime
    do {
      first = try ProxyRuntime(config: config, environment: environment)
    } catch {
      throw ServerError(message: error.description)
    }
    runtime = first
    broker = TokenBroker()
    broker.metrics.withLock { $0 = first.metrics }
    broker.secrets.withLock { $0 = first.secretValues }
    self.loopCount = max(1, loopCount)
    state = ProxyState(runtime: first, broker: broker, denials: denials)
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
    var perLoop = Array(repeating: [(fd: Int32, tls: ListenerTLSSlot?)](), count: loopCount)
    for address in runtime.config.listeners {
      var tls: ListenerTLSSlot? = nil
      if let context = try Self.tlsContext(for: address) {
        let slot = ListenerTLSSlot(context)
        tls = slot
        tlsListeners.append((address, slot))
      }
      var port = address.port
      for i in 0..<loopCount {
        do {
          let bound = try Socket.listen(host: address.host, port: port)
          port = bound.port
          perLoop[i].append((bound.fd, tls))
        } catch {
          throw ServerError(message: error.description)
        }
      }
      boundAddresses.append(IPText.authority(address.host, port))
    }
    state.listeners.withLock { $0 = boundAddresses }
    var adminSocket: (fd: Int32, token: String?)? = nil
    if let admin = runtime.config.admin {
      do {
        let token = try admin.token?.resolve()
        let bound = try Socket.listen(host: admin.address.host, port: admin.address.port)
        adminSocket = (bound.fd, token)
        let host = admin.address.host
        adminAddress = IPText.authority(host, bound.port)
      } catch {
        throw ServerError(message: "admin \(admin.address): \(error)")
      }
    }
    var metadataFD: Int32? = nil
    if let address = runtime.config.metadataServer {
      do {
        let bound = try Socket.listen(host: address.host, port: address.port)
        metadataFD = bound.fd
        let host = address.host
        metadataAddress = IPText.authority(host, bound.port)
      } catch {
        throw ServerError(message: "metadata-server \(address): \(error)")
      }
    }
    var limitsStore: (LimitsStore, String?, LimitsStoreHealth)? = nil
    if let store = runtime.config.limitsStore {
      do {
        let health = LimitsStoreHealth(
          description: store.description, loops: loopCount, failOpen: store.failOpen)
        limitsStore = (store, try store.password?.resolve(), health)
        state.limitsHealth.withLock { $0 = health }
      } catch {
        throw ServerError(message: "limits-store \(store.description): \(error)")
      }
    }
    for i in 0..<loopCount {
      let loop = EventLoop(index: i)
      loops.append(loop)
      if i == 0, let adminSocket {
        admin = LoopBound(
          AdminListener(fd: adminSocket.fd, state: state, token: adminSocket.token, loop: loop),
          loop: loop)
      }
      if i == 0, let metadataFD {
        metadata = LoopBound(MetadataListener(fd: metadataFD, state: state, loop: loop), loop: loop)
      }
      // Built here, before its thread starts; from then on only that thread touches it (reload
      // and drain reach it through `loop.execute`).
      let open = OpenConnectionCount()
      openCounts.append(open)
      let context = LoopBound(
        LoopContext(
          loop: loop, runtime: runtime, broker: broker, denials: denials, listenFDs: perLoop[i],
          openConnections: open),
        loop: loop)
      contexts.append(context)
      if let (store, password, health) = limitsStore {
        let shared = SharedLimits(store: store, password: password, loop: loop, health: health)
        context.value.sharedLimits = shared
        let bound = LoopBound(shared, loop: loop)
        loop.execute { bound.value.start() }
      }
      finished.enter()
      let thread = Thread { [finished] in
        loop.run()
        withExtendedLifetime(context) {}
        finished.leave()
      }
      thread.name = "credproxy-loop-\(i)"
      thread.start()
    }
    if let metadataAddress {
      // `serve` prints the proxy and admin listeners; this one is announced here.
      FileHandle.standardError.write(
        Data("credproxy: metadata server listening on \(metadataAddress)\n".utf8))
    }
  }

  /// Loads `config` for new requests (SIGHUP). Requests in flight finish under the config they
  /// started with; cached tokens survive for credentials whose definition did not change.
  /// Returns notes for the log (e.g. listener changes, which need a restart).
  public func reload(
    config: ProxyConfig, environment: [String: String] = ProcessInfo.processInfo.environment
  ) throws -> [String] {
    let next: ProxyRuntime
    do {
      next = try ProxyRuntime(config: config, environment: environment, previous: runtime)
    } catch {
      throw ServerError(message: error.description)
    }
    var notes: [String] = []
    // Certificates are read again on every reload (renewed files at the same paths, or new
    // paths), all of them before anything is switched: one unreadable file refuses the reload.
    var renewed: [(ListenerTLSSlot, TLSServerContext)] = []
    for (address, slot) in tlsListeners {
      guard let now = config.listeners.first(where: { $0.sameSocket(as: address) }),
        let context = try Self.tlsContext(for: now)
      else { continue }
      renewed.append((slot, context))
    }
    if config.listeners.map(\.socketShape) != runtime.config.listeners.map(\.socketShape) {
      notes.append("listen addresses changed: they take effect after a restart")
    }
    if !renewed.isEmpty {
      notes.append("TLS listener certificates read again: \(renewed.count)")
    }
    let changed = Set(runtime.config.credentials.map(\.name)).union(config.credentials.map(\.name))
      .filter { name in
        switch (runtime.config.credential(named: name), config.credential(named: name)) {
        case (let old?, let new?): return !old.mintsTheSame(as: new)
        case (nil, nil): return false
        default: return true
        }
      }
    if !changed.isEmpty {
      for entry in broker.cache.snapshot() where changed.contains(entry.key.credential) {
        broker.cache.evict(entry.key)
      }
      notes.append(
        "credentials changed, their cached tokens dropped: \(changed.sorted().joined(separator: ", "))"
      )
    }
    if config.admin != runtime.config.admin {
      notes.append("admin listener changes take effect after a restart")
    }
    if config.metadataServer != runtime.config.metadataServer {
      notes.append("metadata-server changes take effect after a restart")
    }
    if config.limitsStore != runtime.config.limitsStore {
      notes.append("limits-store changes take effect after a restart")
    }
    // Mints that began under the old config may still fail with its secrets in their text.
    broker.secrets.withLock { [old = runtime] in $0 = next.secretValues + old.secretValues }
    for (slot, context) in renewed { slot.replace(with: context) }
    runtime = next
    state.runtime.withLock { $0 = next }
    broker.metrics.withLock { $0 = next.metrics }
    for (loop, context) in zip(loops, contexts) {
      loop.execute { context.value.runtime = next }
    }
    return notes
  }

  /// The TLS context of a `listen … tls CERT KEY` listener, read from its files; nil for plain.
  private static func tlsContext(for address: ListenAddress) throws -> TLSServerContext? {
    guard let files = address.tls else { return nil }
    do {
      return try TLSServerContext(certFile: files.certFile, keyFile: files.keyFile)
    } catch {
      throw ServerError(message: "listen \(address): \(error.description)")
    }
  }

  /// Graceful stop (SIGTERM): stop accepting, let in-flight requests finish until `deadline`
  /// seconds, then stop. Returns the number of connections that were still open at the deadline.
  public func drain(deadline seconds: Double) -> Int {
    state.draining.store(true, ordering: .relaxed)
    for (loop, context) in zip(loops, contexts) {
      loop.execute { context.value.beginDrain() }
    }
    let until = Date().addingTimeInterval(seconds)
    var open = 0
    repeat {
      open = openCounts.reduce(0) { $0 + $1.value }
      if open == 0 { break }
      usleep(50_000)
    } while Date() < until
    stop()
    return open
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
