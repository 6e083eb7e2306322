import CredproxyConfig
import EgressPolicy
import Foundation
import Glibc
import GoogleAuth
import Synchronization
import XCTest

@testable import CredproxyCore

/// A value shared between the test thread and loop threads, behind a mutex.
final class Shared<Value>: @unchecked Sendable {
  private let lock = NSLock()
  private var stored: Value
  init(_ value: Value) { stored = value }
  func with<R>(_ body: (inout Value) -> R) -> R { lock.withLock { body(&stored) } }
  var value: Value { lock.withLock { stored } }
}

/// Carries a non-Sendable value to a loop thread; the test makes sure only that thread uses it.
struct Handed<Value>: @unchecked Sendable {
  let value: Value
  init(_ value: Value) { self.value = value }
}

/// A parsed config and the runtime built from it, the way `ProxyServer` builds one.
func makeRuntime(
  _ text: String, environment: [String: String] = [:], previous: ProxyRuntime? = nil
) throws -> ProxyRuntime {
  let config = try ConfigParser.parse(text: text)
  return try ProxyRuntime(config: config, environment: environment, previous: previous)
}

/// A real `EventLoop` with a real `LoopContext`, run on its own thread.
final class TestLoop: @unchecked Sendable {
  let loop: EventLoop
  let context: LoopBound<LoopContext>
  private let finished = DispatchSemaphore(value: 0)
  private var stopped = false
  /// The loop thread's id, for "ran on this loop" checks.
  private(set) var threadID: pthread_t = 0

  init(
    index: Int = 0, runtime: ProxyRuntime, broker: TokenBroker,
    listenFDs: [(fd: Int32, tls: ListenerTLSSlot?)] = []
  ) {
    ProxyServer.prepareProcess()
    let loop = EventLoop(index: index)
    self.loop = loop
    // Built before the thread starts, as ProxyServer does; from then on only the loop touches it.
    let context = LoopBound(
      LoopContext(
        loop: loop, runtime: runtime, broker: broker, denials: DenialLog(), listenFDs: listenFDs),
      loop: loop)
    self.context = context
    let finished = finished
    // The thread lets go of the loop and the context before it signals, so they are freed (and
    // their descriptors closed) on the test thread when the TestLoop goes, not later on this
    // thread while another test runs.
    let held = Shared<(EventLoop, LoopBound<LoopContext>)?>((loop, context))
    let thread = Thread {
      if let (loop, context) = held.value {
        loop.run()
        withExtendedLifetime(context) {}
      }
      held.with { $0 = nil }
      finished.signal()
    }
    thread.name = "test-loop-\(index)"
    thread.start()
    threadID = sync { _ in pthread_self() }
  }

  /// Runs `body` on the loop thread and waits for its result.
  func sync<T>(
    _ body: @escaping (LoopContext) -> T, file: StaticString = #filePath, line: UInt = #line
  ) -> T {
    let result = Shared<T?>(nil)
    let done = DispatchSemaphore(value: 0)
    let work = Handed(body)
    let context = context
    loop.execute {
      let value = work.value(context.value)
      result.with { $0 = value }
      done.signal()
    }
    if done.wait(timeout: .now() + 10) == .timedOut {
      XCTFail("the loop did not run the task within 10 s", file: file, line: line)
    }
    return result.value!
  }

  /// Runs `body` on the loop without waiting.
  func async(_ body: @escaping (LoopContext) -> Void) {
    let work = Handed(body)
    let context = context
    loop.execute { work.value(context.value) }
  }

  /// True when called on this loop's thread.
  var isCurrent: Bool { pthread_equal(threadID, pthread_self()) != 0 }

  func stop() {
    guard !stopped else { return }
    stopped = true
    loop.stop()
    _ = finished.wait(timeout: .now() + 10)
  }

  deinit { stop() }
}

/// Polls `condition` (generously: the machine may be loaded) until it holds or 10 s pass.
func eventually(
  _ message: @autoclosure () -> String = "", timeout: Double = 10,
  file: StaticString = #filePath, line: UInt = #line, _ condition: () -> Bool
) {
  let until = Date().addingTimeInterval(timeout)
  while !condition() {
    if Date() > until {
      XCTFail("condition not met within \(timeout) s. \(message())", file: file, line: line)
      return
    }
    usleep(2_000)
  }
}
