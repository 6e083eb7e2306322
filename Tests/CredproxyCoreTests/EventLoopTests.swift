import CSystem
import Foundation
import Glibc
import Synchronization
import XCTest

@testable import CredproxyCore

/// The loop's curl timer and its fd registrations, on a real epoll loop running on its own thread.
final class EventLoopTests: XCTestCase {
  final class Recorder: @unchecked Sendable {
    let fired = Mutex<[Int64]>([])
    let done = DispatchSemaphore(value: 0)
  }

  func runLoop(_ loop: EventLoop) -> Thread {
    let t = Thread { loop.run() }
    t.start()
    return t
  }

  func testCurlTimerFiresAfterItsTimeout() {
    let loop = EventLoop(index: 0)
    let rec = Recorder()
    loop.onCurlTimer = {
      rec.fired.withLock { $0.append(EventLoop.nowMs()) }; rec.done.signal()
    }
    _ = runLoop(loop)
    let armed = EventLoop.nowMs()
    loop.execute { loop.armCurlTimer(ms: 120) }
    XCTAssertEqual(rec.done.wait(timeout: .now() + 5), .success)
    let firedAt = rec.fired.withLock { $0.first! }
    XCTAssertGreaterThanOrEqual(firedAt - armed, 120, "fired before curl's timeout")
    loop.stop()
  }

  func testALaterTimeoutReplacesAnEarlierOneWithoutFiringEarly() {
    let loop = EventLoop(index: 0)
    let rec = Recorder()
    loop.onCurlTimer = {
      rec.fired.withLock { $0.append(EventLoop.nowMs()) }; rec.done.signal()
    }
    _ = runLoop(loop)
    let armed = EventLoop.nowMs()
    // curl often shortens then lengthens its timeout: the timerfd may fire early, but curl must
    // only be called at the last deadline it asked for.
    loop.execute {
      loop.armCurlTimer(ms: 50)
      loop.armCurlTimer(ms: 300)
    }
    XCTAssertEqual(rec.done.wait(timeout: .now() + 5), .success)
    XCTAssertGreaterThanOrEqual(rec.fired.withLock { $0.first! } - armed, 300)
    loop.stop()
  }

  func testCancelledTimeoutNeverFires() {
    let loop = EventLoop(index: 0)
    let rec = Recorder()
    loop.onCurlTimer = {
      rec.fired.withLock { $0.append(EventLoop.nowMs()) }; rec.done.signal()
    }
    _ = runLoop(loop)
    loop.execute {
      loop.armCurlTimer(ms: 50)
      loop.armCurlTimer(ms: -1)
    }
    XCTAssertEqual(rec.done.wait(timeout: .now() + 0.5), .timedOut)
    loop.stop()
  }

  func testTimeoutZeroRunsAtTheEndOfTheBatch() {
    let loop = EventLoop(index: 0)
    let rec = Recorder()
    loop.onCurlTimer = {
      rec.fired.withLock { $0.append(EventLoop.nowMs()) }; rec.done.signal()
    }
    _ = runLoop(loop)
    loop.execute { loop.armCurlTimer(ms: 0) }
    XCTAssertEqual(rec.done.wait(timeout: .now() + 2), .success)
    loop.stop()
  }

  final class Seen: @unchecked Sendable {
    private let names = Mutex<[String]>([])
    func add(_ n: String) { names.withLock { $0.append(n) } }
    var all: [String] { names.withLock { $0 } }
  }

  final class Handler: EventHandler, @unchecked Sendable {
    let name: String
    let seen: Seen
    init(_ name: String, _ seen: Seen) {
      self.name = name
      self.seen = seen
    }
    func handleEvents(fd: Int32, events: UInt32) {
      var buf = [UInt8](repeating: 0, count: 16)
      // An event with nothing to read was not this owner's.
      seen.add(read(fd, &buf, 16) > 0 ? name : name + " (spurious)")
    }
  }

  final class Box: @unchecked Sendable {
    private let fd = Mutex<Int32>(-1)
    func set(_ v: Int32) { fd.withLock { $0 = v } }
    func get() -> Int32 { fd.withLock { $0 } }
  }

  final class Closer: EventHandler, @unchecked Sendable {
    let action: () -> Void
    init(_ action: @escaping () -> Void) { self.action = action }
    func handleEvents(fd: Int32, events: UInt32) {
      var buf = [UInt8](repeating: 0, count: 16)
      _ = read(fd, &buf, 16)
      action()
    }
  }

  /// An fd closed and reused within one batch: the old owner's pending event must not reach the
  /// new owner (the registration's generation no longer matches).
  func testEventForAClosedAndReusedFdDoesNotReachTheNewOwner() {
    let loop = EventLoop(index: 0)
    let seen = Seen()
    var a: [Int32] = [0, 0]
    var b: [Int32] = [0, 0]
    XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &a), 0)
    XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &b), 0)
    let (trigger, triggerPeer, victim, victimPeer) = (a[0], a[1], b[0], b[1])
    let newOwner = Handler("new-owner", seen)
    let newOwnerPeer = Box()
    // The first event's handler closes the second fd and a new socket takes its number, with a
    // new owner, while the second fd's event is still in the same batch.
    let closer = Closer {
      seen.add("closer")
      loop.unregister(victim)
      close(victim)
      var reused: [Int32] = [0, 0]
      guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &reused) == 0 else {
        return seen.add("fd not reused")
      }
      // Usually the lowest free number is the one just closed; another thread may have taken it,
      // so put the new socket on that number explicitly.
      if reused[0] != victim {
        guard dup2(reused[0], victim) == victim else { return seen.add("fd not reused") }
        close(reused[0])
        reused[0] = victim
      }
      _ = fcntl(reused[0], F_SETFL, O_NONBLOCK)
      loop.register(reused[0], events: EPOLLIN.rawValue, handler: newOwner)
      newOwnerPeer.set(reused[1])
    }
    let done = DispatchSemaphore(value: 0)
    loop.execute {
      loop.register(trigger, events: EPOLLIN.rawValue, handler: closer)
      loop.register(victim, events: EPOLLIN.rawValue, handler: Handler("victim", seen))
      // Both readable before the loop's next epoll_wait: one batch, the trigger first.
      _ = write(triggerPeer, "x", 1)
      _ = write(victimPeer, "y", 1)
    }
    _ = runLoop(loop)
    Thread.sleep(forTimeInterval: 0.3)
    // Later, the new owner's own data: it must hear about that, once.
    loop.execute {
      _ = write(newOwnerPeer.get(), "z", 1)
    }
    Thread.sleep(forTimeInterval: 0.3)
    loop.execute { done.signal() }
    XCTAssertEqual(done.wait(timeout: .now() + 5), .success)
    loop.stop()
    let order = seen.all
    XCTAssertEqual(
      order.first, "closer", "the trigger's event came second; nothing was tested: \(order)")
    XCTAssertFalse(order.contains("fd not reused"), "\(order)")
    // The new owner hears about its own data, in a later batch, exactly as a new registration.
    XCTAssertEqual(order.filter { $0.hasPrefix("new-owner") }, ["new-owner"], "\(order)")
    XCTAssertFalse(order.contains("victim"), "\(order)")
  }
}
