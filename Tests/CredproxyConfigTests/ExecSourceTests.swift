import XCTest

@testable import CredproxyConfig

/// `source exec PROGRAM [ARGS…]`, `exec-timeout` and `auth token`.
final class ExecSourceTests: XCTestCase {
  func testExecSourceAndAuthToken() throws {
    let c = try ConfigParser.parse(
      text: """
        credentials prog {
          source exec bin/print-token --audience "a b" x
          exec-timeout 2500ms
        }
        credentials bare {
          source exec gh-token
        }
        route api.example.com {
          auth token
          credentials prog
          auth-header X-Token
        }
        route other.example.com {
          auth token
          credentials bare
        }
        """, path: "/etc/credproxy/proxy.conf")
    XCTAssertEqual(
      c.credential(named: "prog")?.source,
      .exec(
        ExecCommand(
          program: "/etc/credproxy/bin/print-token", arguments: ["--audience", "a b", "x"],
          timeoutMs: 2500)))
    XCTAssertEqual(
      c.credential(named: "bare")?.source,
      .exec(ExecCommand(program: "gh-token", arguments: [], timeoutMs: 10_000)))
    XCTAssertEqual(c.routes[0].auth, .token)
    XCTAssertEqual(c.routes[0].injectedHeaderName, "X-Token")
    XCTAssertEqual(c.routes[1].injectedHeaderName, "Authorization")
    XCTAssertEqual(c.routes[1].credentials, "bare")
    XCTAssertFalse(c.credential(named: "prog")!.source.canMintIDTokens)
    // The arguments are never shown (they may carry anything).
    XCTAssertEqual(ExecCommand(program: "/p", arguments: ["s3cret"]).description, "/p")
  }

  func testAuthTokenOnAGoogleSourceIsAllowed() throws {
    let c = try ConfigParser.parse(
      text: "route storage.googleapis.com {\n  auth token\n}\n", path: "proxy.conf")
    XCTAssertEqual(c.routes[0].auth, .token)
    XCTAssertEqual(c.routes[0].credentials, "default")
  }

  func testErrors() {
    XCTAssertEqual(
      diagnostics("credentials p {\n  source exec\n}\n"),
      ["proxy.conf:2:10: exec is missing its program; expected source exec PROGRAM [ARGS…]"])
    XCTAssertEqual(
      diagnostics("route a.example.com {\n  auth token x\n}\n"),
      [
        "proxy.conf:2:14: too many arguments to auth token; expected auth token (the token of the route's credentials)"
      ])
    XCTAssertEqual(
      diagnostics(
        "credentials p {\n  source exec /bin/tok\n}\nroute a.example.com {\n  auth OAuth2\n  credentials p\n}\n"
      ),
      [
        "proxy.conf:5:8: auth OAuth2 uses credentials \"p\" (source exec), which prints one token and takes no scopes or audience; expected auth token"
      ])
    XCTAssertEqual(
      diagnostics(
        "credentials p {\n  source exec /bin/tok\n}\nroute a.run.app {\n  auth OIDC\n  credentials p\n}\n"
      ),
      [
        "proxy.conf:5:8: auth OIDC uses credentials \"p\" (source exec), which prints one token and takes no scopes or audience; expected auth token"
      ])
    XCTAssertEqual(
      diagnostics("credentials p {\n  source metadata\n  exec-timeout 5s\n}\n"),
      [
        "proxy.conf:3:16: exec-timeout applies to source exec only; credentials \"p\" has source metadata"
      ])
    XCTAssertEqual(
      diagnostics("credentials p {\n  source exec /bin/tok\n  exec-timeout 11m\n}\n"),
      ["proxy.conf:3:16: exec-timeout 11m is out of range; expected 1ms to 10m"])
    XCTAssertEqual(
      diagnostics("route a.example.com {\n  auth token\n  credentials nope\n}\n"),
      [
        "proxy.conf:3:15: undefined credentials \"nope\"; expected a credentials nope { … } block, or default"
      ])
  }
}
