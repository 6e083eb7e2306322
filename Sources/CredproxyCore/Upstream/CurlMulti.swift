import CCurl
import CSystem
import Glibc

/// One libcurl multi handle per event loop (a multi handle is not thread-safe). curl's sockets join
/// the loop's epoll set through CURLMOPT_SOCKETFUNCTION and its timeouts arm the loop's timerfd
/// through CURLMOPT_TIMERFUNCTION, so upstream I/O runs on the same thread as the client side.
final class CurlMulti: EventHandler {
  let multi: UnsafeMutableRawPointer
  unowned let loop: EventLoop
  /// Finished handles, kept for reuse: curl_easy_reset is cheaper than a new handle, and the
  /// connections themselves are pooled by the multi handle either way.
  private var spareHandles: [UnsafeMutableRawPointer] = []
  /// Handles still configured for one route (RouteUpstream.key) after a transfer that ended
  /// cleanly: the next request on that route sets only its own options. Only the newest config
  /// load's routes are kept; a handle of an older one is reset before any reuse.
  private var routeHandles: [DialCheck.RouteKey: [UnsafeMutableRawPointer]] = [:]
  private var routeHandlesGeneration = 0
  private static let maxPooledPerRoute = 64
  /// True while curl is running our callbacks; removing a handle then would pull the rug.
  private var dispatching = false
  private var deferredCancels: [UpstreamTransfer] = []
  /// Every transfer curl holds, kept alive here until curl is done with it: its callbacks find
  /// the object through an unretained pointer, so the multi, not the connection, is the owner
  /// while the handle is added (as corelibs-foundation's _MultiHandle does).
  private var active: [ObjectIdentifier: UpstreamTransfer] = [:]
  /// Recent per-request address allows on this loop (see `AddressVerdicts`).
  let verdicts = AddressVerdicts()

  init(loop: EventLoop) {
    self.loop = loop
    multi = curl_multi_init()
    let me = Unmanaged.passUnretained(self).toOpaque()
    cp_multi_setopt_socket_cb(multi, curlSocketCallback)
    cp_multi_setopt_ptr(multi, CURLMOPT_SOCKETDATA, me)
    cp_multi_setopt_timer_cb(multi, curlTimerCallback)
    cp_multi_setopt_ptr(multi, CURLMOPT_TIMERDATA, me)
    // Lets HTTP/2 streams to one host share a connection instead of opening one each.
    cp_multi_setopt_long(multi, CURLMOPT_PIPELINING, 2)  // CURLPIPE_MULTIPLEX
    cp_multi_setopt_long(multi, CURLMOPT_MAXCONNECTS, 256)
    loop.onCurlTimer = { [unowned self] in
      self.socketAction(fd: CP_SOCKET_TIMEOUT, flags: 0)
    }
  }

  deinit {
    curl_multi_cleanup(multi)
    for h in spareHandles { curl_easy_cleanup(h) }
    for h in routeHandles.values.joined() { curl_easy_cleanup(h) }
  }

  /// A handle for a transfer on `route` (nil: our own requests): `configured` when it comes from
  /// the route's pool with the route's options already set, else fresh or reset.
  func easyHandle(for route: RouteUpstream?) -> (handle: UnsafeMutableRawPointer, configured: Bool)
  {
    if let key = route?.key, let h = routeHandles[key]?.popLast() { return (h, true) }
    if let h = spareHandles.popLast() {
      curl_easy_reset(h)
      return (h, false)
    }
    return (curl_easy_init(), false)
  }

  func start(_ transfer: UpstreamTransfer) {
    loop.assertInLoop()
    guard !transfer.setupFailed, curl_multi_add_handle(multi, transfer.easy) == CURLM_OK else {
      // Reported on the next turn of the loop, never from inside the caller's own call.
      transfer.isActive = false
      let failed = LoopBound((multi: self, transfer: transfer), loop: loop)
      loop.execute {
        failed.value.transfer.finish(CURLE_FAILED_INIT)
        failed.value.multi.recycle(failed.value.transfer, cleanly: false)
      }
      return
    }
    active[ObjectIdentifier(transfer)] = transfer
  }

  /// Aborts a transfer; its delegate hears nothing more from it.
  func cancel(_ transfer: UpstreamTransfer) {
    if dispatching {
      transfer.detach()
      deferredCancels.append(transfer)
      return
    }
    remove(transfer)
  }

  /// Runs a curl call that may invoke our callbacks (socket_action, pause).
  func whileDispatching(_ body: () -> Void) {
    let outer = dispatching
    dispatching = true
    body()
    dispatching = outer
    if !outer { afterDispatch() }
  }

  private func remove(_ transfer: UpstreamTransfer) {
    transfer.detach()
    guard transfer.isActive else { return }
    curl_multi_remove_handle(multi, transfer.easy)
    transfer.isActive = false
    recycle(transfer, cleanly: false)
  }

  /// `cleanly`: the transfer completed (CURLE_OK); only then may its handle keep its route's
  /// configuration for the next request on that route.
  private func recycle(_ transfer: UpstreamTransfer, cleanly: Bool) {
    active.removeValue(forKey: ObjectIdentifier(transfer))
    let key = transfer.poolKey
    let handle = transfer.releaseHandle()
    if cleanly, let key {
      if key.generation > routeHandlesGeneration {
        // A newer config load: the older one's handles are reset and become plain spares.
        for h in routeHandles.values.joined() { spare(h) }
        routeHandles.removeAll()
        routeHandlesGeneration = key.generation
      }
      if key.generation == routeHandlesGeneration,
        routeHandles[key, default: []].count < Self.maxPooledPerRoute
      {
        routeHandles[key, default: []].append(handle)
        return
      }
    }
    spare(handle)
  }

  private func spare(_ handle: UnsafeMutableRawPointer) {
    if spareHandles.count < 64 {
      spareHandles.append(handle)
    } else {
      curl_easy_cleanup(handle)
    }
  }

  func handleEvents(fd: Int32, events: UInt32) {
    var flags: Int32 = 0
    if events & EPOLLIN.rawValue != 0 { flags |= CP_CSELECT_IN }
    if events & EPOLLOUT.rawValue != 0 { flags |= CP_CSELECT_OUT }
    if events & (EPOLLERR.rawValue | EPOLLHUP.rawValue) != 0 { flags |= CP_CSELECT_ERR }
    socketAction(fd: fd, flags: flags)
  }

  private func socketAction(fd: Int32, flags: Int32) {
    whileDispatching {
      var running: Int32 = 0
      curl_multi_socket_action(multi, fd, flags, &running)
    }
  }

  private func afterDispatch() {
    dispatching = true
    var pending: Int32 = 0
    while let msg = curl_multi_info_read(multi, &pending) {
      guard msg.pointee.msg == CURLMSG_DONE else { continue }
      let easy = msg.pointee.easy_handle!
      let result = msg.pointee.data.result
      var priv: UnsafeMutableRawPointer? = nil
      cp_easy_getinfo_ptr(easy, CURLINFO_PRIVATE, &priv)
      curl_multi_remove_handle(multi, easy)
      guard let priv else { continue }
      let transfer = Unmanaged<UpstreamTransfer>.fromOpaque(priv).takeUnretainedValue()
      transfer.isActive = false
      transfer.finish(result)
      recycle(transfer, cleanly: result == CURLE_OK)
    }
    let cancels = deferredCancels
    deferredCancels.removeAll()
    for t in cancels where t.isActive {
      curl_multi_remove_handle(multi, t.easy)
      t.isActive = false
      recycle(t, cleanly: false)
    }
    dispatching = false
  }

  fileprivate func socketCallback(fd: Int32, what: Int32) {
    switch what {
    case CP_POLL_REMOVE:
      loop.unregister(fd)
    default:
      var events: UInt32 = 0
      if what == CP_POLL_IN || what == CP_POLL_INOUT { events |= EPOLLIN.rawValue }
      if what == CP_POLL_OUT || what == CP_POLL_INOUT { events |= EPOLLOUT.rawValue }
      loop.watch(fd, events: events, handler: self)
    }
  }
}

private func curlSocketCallback(
  _ easy: UnsafeMutableRawPointer?, _ fd: curl_socket_t, _ what: Int32,
  _ userp: UnsafeMutableRawPointer?, _ socketp: UnsafeMutableRawPointer?
) -> Int32 {
  Unmanaged<CurlMulti>.fromOpaque(userp!).takeUnretainedValue().socketCallback(fd: fd, what: what)
  return 0
}

private func curlTimerCallback(
  _ multi: UnsafeMutableRawPointer?, _ timeoutMs: Int, _ userp: UnsafeMutableRawPointer?
) -> Int32 {
  Unmanaged<CurlMulti>.fromOpaque(userp!).takeUnretainedValue().loop.armCurlTimer(ms: timeoutMs)
  return 0
}
