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

  /// Who owns each fd, and under which registration: an fd closed and reused within one batch of
  /// events gets a new generation, so events meant for its old owner are dropped, not delivered
  /// to the new one (the epoll data carries the generation next to the fd).
  private struct Registration {
    let handler: EventHandler
    let generation: UInt32
  }
  private var handlers: [Registration?] = []
  private var nextGeneration: UInt32 = 1
  /// The thread running `run()`; nil before it starts (set-up happens on the creating thread).
  private var loopThread: pthread_t?
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

  /// Traps (in debug builds) when called off the loop's thread once the loop runs: everything
  /// but `execute` belongs to that thread, and a slip here is a data race, not a slow path.
  @inline(__always)
  func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
    assert(
      loopThread.map { pthread_equal($0, pthread_self()) != 0 } ?? true,
      "called off event loop \(index)'s thread", file: file, line: line)
  }

  func register(_ fd: Int32, events: UInt32, handler: EventHandler) {
    assertInLoop()
    let generation = setHandler(fd, handler)
    addRaw(fd, events: events, generation: generation)
  }

  func modify(_ fd: Int32, events: UInt32) {
    assertInLoop()
    let generation = Int(fd) < handlers.count ? handlers[Int(fd)]?.generation ?? 0 : 0
    var ev = epoll_event(events: events, data: epoll_data_t(u64: Self.tag(fd, generation)))
    if epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) != 0 && errno == ENOENT {
      epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)
    }
  }

  @inline(__always)
  private static func tag(_ fd: Int32, _ generation: UInt32) -> UInt64 {
    UInt64(generation) << 32 | UInt64(UInt32(bitPattern: fd))
  }

  /// Registers or updates a descriptor that curl owns; the handler receives its events.
  func watch(_ fd: Int32, events: UInt32, handler: EventHandler) {
    let i = Int(fd)
    let known = i >= 0 && i < handlers.count && handlers[i]?.handler === handler
    let generation = setHandler(fd, handler)
    if known {
      modify(fd, events: events)
      return
    }
    // Not in the epoll set since curl's last CURL_POLL_REMOVE (a pooled connection taken up
    // again, or a new socket): ADD at once, not a MOD that fails first (one syscall, not two).
    var ev = epoll_event(events: events, data: epoll_data_t(u64: Self.tag(fd, generation)))
    if epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0 && errno == EEXIST {
      epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev)
    }
  }

  func unregister(_ fd: Int32) {
    assertInLoop()
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
    loopThread = pthread_self()
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
        let data = events[i].data.u64
        let fd = Int32(bitPattern: UInt32(truncatingIfNeeded: data))
        let generation = UInt32(truncatingIfNeeded: data >> 32)
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
        } else if Int(fd) < handlers.count, let owner = handlers[Int(fd)],
          owner.generation == generation
        {
          owner.handler.handleEvents(fd: fd, events: mask)
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

  /// The loop's own descriptors (wake-up, timers) use generation 0, which no handler gets.
  private func addRaw(_ fd: Int32, events: UInt32, generation: UInt32 = 0) {
    var ev = epoll_event(events: events, data: epoll_data_t(u64: Self.tag(fd, generation)))
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev)
  }

  /// Records `handler` as the owner of `fd`. The same owner keeps its generation (curl updates
  /// its sockets' interest many times); a new owner gets a new one.
  @discardableResult
  private func setHandler(_ fd: Int32, _ handler: EventHandler) -> UInt32 {
    let i = Int(fd)
    if i >= handlers.count {
      handlers.append(contentsOf: repeatElement(nil, count: max(i + 1 - handlers.count, 1024)))
    }
    if let current = handlers[i], current.handler === handler { return current.generation }
    let generation = nextGeneration
    nextGeneration = nextGeneration == UInt32.max ? 1 : nextGeneration + 1
    handlers[i] = Registration(handler: handler, generation: generation)
    return generation
  }
}
