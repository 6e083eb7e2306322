import Foundation
import XCTest

@testable import CredproxyCore

/// Real programs (/bin/sh scripts) through the runner: output, exit status, signals, timeout,
/// the small environment and the closed descriptors.
final class ProgramRunnerTests: XCTestCase {
  private var dir = ""

  override func setUpWithError() throws {
    dir = NSTemporaryDirectory() + "program-runner-\(getpid())-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
  }

  override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

  private func script(_ name: String, _ body: String) throws -> String {
    let path = "\(dir)/\(name)"
    try ("#!/bin/sh\n" + body + "\n").write(toFile: path, atomically: true, encoding: .utf8)
    chmod(path, 0o755)
    return path
  }

  private func run(
    _ path: String, _ args: [String] = [], env: [String: String] = [:], timeoutMs: Int = 5_000
  )
    -> ProgramRunner.Outcome
  {
    ProgramRunner.run(path: path, arguments: args, environment: env, timeoutMs: timeoutMs)
  }

  func testOutputArgumentsAndEnvironment() throws {
    let p = try script("echo", "printf '%s|' \"$@\"; printf '%s|%s' \"$ONLY\" \"${SECRET-unset}\"")
    let out = run(p, ["a b", "$HOME", "*"], env: ["ONLY": "yes"])
    XCTAssertEqual(out.termination, .exited(0))
    XCTAssertEqual(String(decoding: out.stdout, as: UTF8.self), "a b|$HOME|*|yes|unset")
  }

  func testExitStatusAndSignal() throws {
    XCTAssertEqual(
      run(try script("fail", "echo out; echo err >&2; exit 7")).termination, .exited(7))
    XCTAssertEqual(run(try script("sig", "kill -9 $$")).termination, .signaled(9))
  }

  func testTimeoutKillsTheWholeGroup() throws {
    let marker = "\(dir)/child-alive"
    let p = try script("hang", "(sleep 2; touch \(marker)) & sleep 30")
    let start = Date()
    let out = run(p, timeoutMs: 300)
    XCTAssertEqual(out.termination, .timedOut(ms: 300))
    XCTAssertLessThan(Date().timeIntervalSince(start), 5)
    Thread.sleep(forTimeInterval: 2.5)
    XCTAssertFalse(FileManager.default.fileExists(atPath: marker), "the child outlived the kill")
  }

  func testOutputCap() throws {
    let p = try script("flood", "yes 0123456789")
    XCTAssertEqual(run(p).termination, .outputTooLarge)
  }

  func testNoInheritedDescriptorsAndDefaultSignalMask() throws {
    let fd = open("/dev/null", O_RDONLY)  // not O_CLOEXEC: closefrom must still close it
    defer { close(fd) }
    let p = try script(
      "fds", "ls /proc/self/fd | sort -n | tr '\\n' ' '; grep SigBlk /proc/self/status")
    var blocked = sigset_t()
    sigemptyset(&blocked)
    sigaddset(&blocked, SIGTERM)
    pthread_sigmask(SIG_BLOCK, &blocked, nil)
    defer { pthread_sigmask(SIG_UNBLOCK, &blocked, nil) }
    let text = String(decoding: run(p).stdout, as: UTF8.self)
    // 0, 1, 2 and the fd `ls` opens for the directory itself.
    let fds = text.split(separator: "S")[0].split(separator: " ").compactMap { Int($0) }
    XCTAssertTrue(fds.allSatisfy { $0 <= 3 }, text)
    XCTAssertTrue(text.contains("SigBlk:\t0000000000000000"), text)
  }

  func testSpawnFailureAndLocate() throws {
    if case .spawnFailed = run("\(dir)/missing").termination {
    } else {
      XCTFail("ran a missing program")
    }
    XCTAssertEqual(ProgramRunner.locate("sh", searchPath: "/nonexistent:/bin"), "/bin/sh")
    XCTAssertNil(ProgramRunner.locate("no-such-program-xyz", searchPath: "/bin"))
    XCTAssertNil(ProgramRunner.locate(dir, searchPath: nil))
    XCTAssertEqual(
      ProgramRunner.smallEnvironment(from: ["PATH": "/x", "AWS_SECRET": "s", "HOME": "/h"]),
      ["PATH": "/x", "HOME": "/h"])
  }
}
