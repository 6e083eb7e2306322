/// Carries a value that belongs to one event loop through a `@Sendable` closure (a task posted with
/// `EventLoop.execute`, a resolver thread's answer), and checks (debug builds) that it is opened
/// only on that loop.
///
/// `@unchecked Sendable`: the value itself is not thread-safe; what makes passing it sound is that
/// `value` is read only on `loop`'s thread, which `assertInLoop` checks.
struct LoopBound<Value>: @unchecked Sendable {
  private let wrapped: Value
  let loop: EventLoop

  init(_ value: Value, loop: EventLoop) {
    wrapped = value
    self.loop = loop
  }

  init(loop: EventLoop, _ value: Value) {
    self.init(value, loop: loop)
  }

  var value: Value {
    loop.assertInLoop()
    return wrapped
  }
}
