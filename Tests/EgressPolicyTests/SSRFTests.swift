import CredproxyConfig
import EgressPolicy
import XCTest

final class SSRFTests: XCTestCase {
  func routes(_ text: String) throws -> [Route] {
    try ConfigParser.parse(text: text).routes
  }

  func ip(_ s: String) -> IPAddress { IPAddress(s)! }

  func testDecisions() throws {
    let r = try routes(
      """
      route *.example.com {
      }
      route 127.0.0.1:9000 {
      }
      route internal.example.com {
        connect-to 10.0.0.12:443
      }
      route db.corp.example {
        allow-private
      }
      route metadata.example.org {
      }
      route * {
      }
      """)
    let policy = SSRFPolicy()
    let host = HostNormalizer.normalize
    // Wildcard route, a name that resolves to loopback / metadata / private: refused.
    XCTAssertFalse(
      policy.mayDial(address: ip("127.0.0.1"), route: r[0], targetHost: host("evil.example.com")))
    XCTAssertFalse(
      policy.mayDial(address: ip("169.254.169.254"), route: r[0], targetHost: host("x.example.com"))
    )
    XCTAssertFalse(
      policy.mayDial(address: ip("::ffff:10.0.0.1"), route: r[0], targetHost: host("x.example.com"))
    )
    XCTAssertFalse(
      policy.mayDial(address: ip("fd00:ec2::254"), route: r[0], targetHost: host("x.example.com")))
    XCTAssertTrue(
      policy.mayDial(address: ip("93.184.216.34"), route: r[0], targetHost: host("x.example.com")))
    // Catch-all `*` with an IP-literal target in any spelling: refused.
    for spelling in ["127.0.0.1", "2130706433", "0x7f.1", "[::ffff:127.0.0.1]"] {
      let t = host(spelling)
      XCTAssertFalse(policy.mayDial(address: t.address!, route: r[5], targetHost: t), spelling)
    }
    // The exact pattern names the address: allowed, in any spelling of it, and only that address.
    XCTAssertTrue(
      policy.mayDial(address: ip("127.0.0.1"), route: r[1], targetHost: host("127.0.0.1")))
    XCTAssertTrue(policy.mayDial(address: ip("127.0.0.1"), route: r[1], targetHost: host("127.1")))
    XCTAssertFalse(
      policy.mayDial(address: ip("127.0.0.2"), route: r[1], targetHost: host("127.0.0.1")))
    // connect-to: the operator named the address.
    XCTAssertTrue(
      policy.mayDial(
        address: ip("10.0.0.12"), route: r[2], targetHost: host("internal.example.com")))
    // allow-private.
    XCTAssertTrue(
      policy.mayDial(address: ip("192.168.1.10"), route: r[3], targetHost: host("db.corp.example")))
    XCTAssertTrue(
      policy.mayDial(
        address: ip("169.254.169.254"), route: r[3], targetHost: host("db.corp.example")))
    // An exact name pattern may reach what the name resolves to.
    XCTAssertTrue(
      policy.mayDial(
        address: ip("169.254.169.254"), route: r[4], targetHost: host("METADATA.example.org.")))
    // The reason names the address and its class.
    let why = policy.refusal(
      address: ip("169.254.169.254"), route: r[0], targetHost: host("x.example.com"))
    XCTAssertEqual(
      why,
      "address 169.254.169.254 (link-local) of \"x.example.com\" is not public; a route reaches such addresses only when a pattern names the host exactly, or with connect-to or allow-private"
    )
    XCTAssertTrue(SSRFPolicy.namesExactly(r[1], host("127.0.0.1")))
    XCTAssertFalse(SSRFPolicy.namesExactly(r[0], host("a.example.com")))
  }

  func testExactIPv6Pattern() throws {
    let r = try routes("route [::1]:8080 {\n}\nroute [::ffff:127.0.0.1] {\n}\n")
    let policy = SSRFPolicy()
    XCTAssertTrue(
      policy.mayDial(address: IPAddress("::1")!, route: r[0], targetHost: .ip(IPAddress("::1")!)))
    XCTAssertTrue(
      policy.mayDial(
        address: IPAddress("127.0.0.1")!, route: r[1],
        targetHost: HostNormalizer.normalize("127.0.0.1")))
  }
}
