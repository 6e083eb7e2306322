import CSystem
import Glibc
import Synchronization

/// Something that owns a file descriptor registered with an event loop.
protocol EventHandler: AnyObject {
  func handleEvents(fd: Int32, events: UInt32)
}

/// One thread, one epoll set. Client sockets, curl's sockets and the loop's own timer and wake-up
/// descriptors all live in the same set, so a request never crosses threads.
///
/// Everything but `execute` must be called on the loop's own thread. `@unchecked Sendable` is
/// sound because cross-thread access goes through the mutex-guarded task queue and the eventfd.
final class EventLoop: @unchecked Sendable {
  let index: Int
  private let epfd: Int32
  private let wakeFD: Int32
  /// Fires every `tickInterval` to enforce header, idle and response deadlines.
  private let tickFD: Int32
  /// Armed to curl's next timeout (CURLMOPT_TIMERFUNCTION).
  let curlTimerFD: Int32
  static let tickIntervalMs = 250

  private var handlers: [EventHandler?] = []
  private let tasks = Mutex<[@Sendable () -> Void]>([])
  private var stopping = false

  /// Called on every tick with the loop's monotonic time in milliseconds.
  var onTick: ((Int64) -> Void)?
  /// More tick callbacks (listeners, the admin server), called after `onTick` in the order added.
  /// Deadlines hang off the tick, not off events: a silent peer produces no events.
  private var tickHandlers: [(Int64) -> Void] = []

  /// Adds `handler` to every tick, for as long as the loop runs (loop thread only).
  func addTickHandler(_ handler: @escaping (Int64) -> Void) {
    tickHandlers.append(handler)
  }
  /// Called when the curl timer fires.
  var onCurlTimer: (() -> Void)?

  init(index: Int) {
    self.index = index
    epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
    wakeFD = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
    tickFD = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
    curlTimerFD = timerfd_create(CLOCK_MONOTONIC, Int32(TFD_NONBLOCK | TFD_CLOEXEC))
    precondition(epfd >= 0 && wakeFD >= 0 && tickFD >= 0 && curlTimerFD >= 0, "epoll setup failed")
    addRaw(wakeFD, events: EPOLLIN.rawValue)
    addRaw(tickFD, events: EPOLLIN.rawValue)
    addRaw(curlTimerFD, events: EPOLLIN.rawValue)
    let tick = Int(EventLoop.tickIntervalMs)
    var spec = itimerspec(
      it_interval: timespec(tv_sec: 0, tv_nsec: tick * 1_000_000),
      it_value: timespec(tv_sec: 0, tv_nsec: tick * 1_000_000))
    timerfd_settime(tickFD, 0, &spec, nil)
  }

  deinit {
    close(epfd)
    close(wakeFD)
    close(tickFD)
    close(curlTimerFD)
  }

  static func nowMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
  }

  // MARK: registration (loop thread only)

  func register(_ fd: Int32, events: UInt32, handler: EventHandler) {
    setHandler(fd, handler)
    addRaw(fd, events: events)
  }

  func modify(_ fd: Int32, events: UInt32) {
    var ev = epoll_event(events: events, data: epoll_data_t(fd: fd))
    if epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT {
      epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)
    }
  }

  /// Registers or updates a descriptor that curl owns; the handler receives its events.
  func watch(_ fd: Int32, events: UInt32, handler: EventHandler) {
    setHandler(fd, handler)
    modify(fd, events: events)
  }

  func unregister(_ fd: Int32) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, nil)
    if fd >= 0 && Int(fd) < handlers.count { handlers[Int(fd)] = nil }
  }

  /// curl asked for a timeout "now": handled at the end of the current batch, no syscall.
  private var curlTimeoutDue = false
  /// When curl wants its next timeout (monotonic ms); nil when it wants none.
  private var curlDeadlineMs: Int64?
  /// When the timerfd will fire; nil when disarmed. Re-armed only to fire *earlier*: curl changes
  /// its timeout several times per request, and a timerfd_settime each time was the most
  /// frequent syscall in the profile. An early fire is re-armed to the real deadline.
  private var timerArmedMs: Int64?

  /// CURLMOPT_TIMERFUNCTION: `ms` < 0 means no timeout, 0 means as soon as possible.
  func armCurlTimer(ms: Int) {
    if ms < 0 {
      curlDeadlineMs = nil
      return
    }
    if ms == 0 {
      curlDeadlineMs = nil
      curlTimeoutDue = true
      return
    }
    let deadline = EventLoop.nowMs() + Int64(ms)
    curlDeadlineMs = deadline
    if timerArmedMs == nil || deadline < timerArmedMs! { setTimer(deadline) }
  }

  private func setTimer(_ deadlineMs: Int64) {
    let ms = max(1, deadlineMs - EventLoop.nowMs())
    var spec = itimerspec()
    spec.it_value = timespec(tv_sec: Int(ms / 1000), tv_nsec: Int(ms % 1000) * 1_000_000)
    timerfd_settime(curlTimerFD, 0, &spec, nil)
    timerArmedMs = deadlineMs
  }

  private func curlTimerFired() {
    timerArmedMs = nil
    guard let deadline = curlDeadlineMs else { return }
    if deadline <= EventLoop.nowMs() {
      curlDeadlineMs = nil
      onCurlTimer?()
    } else {
      setTimer(deadline)
    }
  }

  /// Work that should happen once per batch of events (coalesced writes, "now" timeouts).
  var onBatchEnd: (() -> Void)?

  // MARK: cross-thread

  /// Runs `task` on the loop's thread. Safe from any thread.
  func execute(_ task: @escaping @Sendable () -> Void) {
    tasks.withLock { $0.append(task) }
    var one: UInt64 = 1
    _ = Glibc.write(wakeFD, &one, 8)
  }

  func stop() {
    execute { [self] in stopping = true }
  }

  // MARK: the loop

  func run() {
    let maxEvents = 256
    let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: maxEvents)
    defer { events.deallocate() }
    while !stopping {
      let n = epoll_wait(epfd, events, Int32(maxEvents), -1)
      if n < 0 {
        if errno == EINTR { continue }
        fatalError("epoll_wait failed: errno \(errno)")
      }
      for i in 0..<Int(n) {
        let fd = events[i].data.fd
        let mask = events[i].events
        if fd == wakeFD {
          drain(wakeFD)
          runTasks()
        } else if fd == tickFD {
          drain(tickFD)
          let now = EventLoop.nowMs()
          onTick?(now)
          for handler in tickHandlers { handler(now) }
        } else if fd == curlTimerFD {
          drain(curlTimerFD)
          curlTimerFired()
        } else if Int(fd) < handlers.count, let handler = handlers[Int(fd)] {
          handler.handleEvents(fd: fd, events: mask)
        }
      }
      // A timeout curl wants "now" may be asked for again while it runs: loop until quiet.
      var rounds = 0
      while curlTimeoutDue && rounds < 16 {
        curlTimeoutDue = false
        onCurlTimer?()
        rounds += 1
      }
      onBatchEnd?()
      if curlTimeoutDue { setTimer(EventLoop.nowMs()) }
    }
  }

  private func runTasks() {
    let pending = tasks.withLock { queue in
      let taken = queue
      queue.removeAll()
      return taken
    }
    for task in pending { task() }
  }

  private func drain(_ fd: Int32) {
    var value: UInt64 = 0
    _ = Glibc.read(fd, &value, 8)
  }

  private func addRaw(_ fd: Int32, events: UInt32) {
    var ev = epoll_event(events: events, data: epoll_data_t(fd: fd))
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)
  }

  private func setHandler(_ fd: Int32, _ handler: EventHandler) {
    let i = Int(fd)
    if i >= handlers.count {
      handlers.append(contentsOf: repeatElement(nil, count: max(i + 1 - handlers.count, 1024)))
    }
    handlers[i] = handler
  }
}
