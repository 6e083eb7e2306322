import CredproxyConfig
import Foundation
import GoogleAuth
import XCTest

@testable import CredproxyCore

/// OIDC proxy tokens and GitHub App JWTs, with keys and signatures made by the `openssl` CLI (an
/// implementation independent of credproxy's).
final class JWTVerifierTests: XCTestCase {
  let dir = FileManager.default.temporaryDirectory.appendingPathComponent(
    "jwt-tests-\(UUID().uuidString)")

  override func setUpWithError() throws {
    try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
  }

  override func tearDownWithError() throws {
    try? FileManager.default.removeItem(at: dir)
  }

  @discardableResult
  func openssl(_ args: [String]) throws -> Data {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
    p.arguments = args
    let out = Pipe()
    p.standardOutput = out
    p.standardError = FileHandle.nullDevice
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    XCTAssertEqual(p.terminationStatus, 0, "openssl \(args.joined(separator: " "))")
    return data
  }

  func path(_ name: String) -> String { dir.appendingPathComponent(name).path }

  /// An RSA key of `bits`: its PEM path and its JWK (n from `openssl rsa -modulus`).
  func rsaKey(_ bits: Int = 2048, kid: String) throws -> (String, [String: Any]) {
    let key = path("\(kid).pem")
    try openssl([
      "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:\(bits)", "-out", key,
    ])
    let text = String(
      decoding: try openssl(["rsa", "-in", key, "-noout", "-modulus"]), as: UTF8.self)
    let hex = text.trimmingCharacters(in: .whitespacesAndNewlines).replacingOccurrences(
      of: "Modulus=", with: "")
    var n: [UInt8] = []
    var i = hex.startIndex
    while i < hex.endIndex {
      let j = hex.index(i, offsetBy: 2)
      n.append(UInt8(hex[i..<j], radix: 16)!)
      i = j
    }
    return (
      key,
      [
        "kty": "RSA", "kid": kid, "use": "sig", "n": Base64URL.encode(n),
        "e": Base64URL.encode([1, 0, 1]),
      ]
    )
  }

  /// A P-256 key: PEM path and JWK (x, y from the DER SubjectPublicKeyInfo's last 64 bytes).
  func ecKey(kid: String) throws -> (String, [String: Any]) {
    let key = path("\(kid).pem")
    try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key])
    let spki = [UInt8](try openssl(["pkey", "-in", key, "-pubout", "-outform", "DER"]))
    let point = Array(spki.suffix(64))
    return (
      key,
      [
        "kty": "EC", "kid": kid, "crv": "P-256", "x": Base64URL.encode(point.prefix(32)),
        "y": Base64URL.encode(point.suffix(32)),
      ]
    )
  }

  /// A compact JWS signed by `openssl dgst`; ES256's DER signature converted to `r||s`.
  func token(_ header: [String: Any], _ claims: [String: Any], key: String, ec: Bool = false)
    throws -> String
  {
    let h = Base64URL.encode(try JSONSerialization.data(withJSONObject: header))
    let c = Base64URL.encode(try JSONSerialization.data(withJSONObject: claims))
    let input = path(UUID().uuidString)
    try Data("\(h).\(c)".utf8).write(to: URL(fileURLWithPath: input))
    var sig = [UInt8](try openssl(["dgst", "-sha256", "-sign", key, input]))
    if ec { sig = rawECDSA(sig) }
    return "\(h).\(c).\(Base64URL.encode(sig))"
  }

  func rawECDSA(_ der: [UInt8]) -> [UInt8] {
    // SEQUENCE { INTEGER r, INTEGER s }, short lengths (P-256).
    var i = 2
    var out: [UInt8] = []
    for _ in 0..<2 {
      let len = Int(der[i + 1])
      var v = Array(der[(i + 2)..<(i + 2 + len)])
      while v.count > 32 { v.removeFirst() }
      out += [UInt8](repeating: 0, count: 32 - v.count) + v
      i += 2 + len
    }
    return out
  }

  func testRS256AndES256VerifyAndTamperingFails() throws {
    let (rsaPEM, rsaJWK) = try rsaKey(kid: "r1")
    let (ecPEM, ecJWK) = try ecKey(kid: "e1")
    let keys = [VerificationKey.fromJWK(rsaJWK)!, VerificationKey.fromJWK(ecJWK)!]
    let claims: [String: Any] = ["iss": "https://i", "aud": "a", "exp": 2_000_000_000]
    let rs = try SignedToken.parse(
      try token(["alg": "RS256", "kid": "r1"], claims, key: rsaPEM))
    XCTAssertTrue(rs.verified(by: keys))
    XCTAssertEqual(rs.claims["aud"] as? String, "a")
    let es = try SignedToken.parse(
      try token(["alg": "ES256", "kid": "e1"], claims, key: ecPEM, ec: true))
    XCTAssertTrue(es.verified(by: keys))
    // Without a kid, the issuer's only key of the right type decides; with two, none does.
    let noKid = try SignedToken.parse(try token(["alg": "ES256"], claims, key: ecPEM, ec: true))
    XCTAssertTrue(noKid.verified(by: keys))
    let (_, secondEC) = try ecKey(kid: "e2")
    XCTAssertFalse(noKid.verified(by: keys + [VerificationKey.fromJWK(secondEC)!]))
    XCTAssertFalse(noKid.hasCandidate(in: keys + [VerificationKey.fromJWK(secondEC)!]))
    // Claims changed after signing.
    let parts = try token(["alg": "RS256", "kid": "r1"], claims, key: rsaPEM).split(separator: ".")
    let other = Base64URL.encode(
      try JSONSerialization.data(withJSONObject: [
        "iss": "https://i", "aud": "b", "exp": 2_000_000_000,
      ]))
    XCTAssertFalse(try SignedToken.parse("\(parts[0]).\(other).\(parts[2])").verified(by: keys))
    // An ES256 token naming the RSA key's kid: the wrong key type never verifies.
    let confused = try SignedToken.parse(
      try token(["alg": "ES256", "kid": "r1"], claims, key: ecPEM, ec: true))
    XCTAssertFalse(confused.hasCandidate(in: keys))
    XCTAssertFalse(confused.verified(by: keys))
    // Unknown kid: no candidate (the caller refetches the JWKS).
    XCTAssertFalse(
      try SignedToken.parse(try token(["alg": "RS256", "kid": "r2"], claims, key: rsaPEM))
        .hasCandidate(in: keys))
  }

  func testOnlyRS256AndES256AreParsed() throws {
    let claims = Base64URL.encode(Array(#"{"exp":1}"#.utf8))
    for alg in ["none", "HS256", "RS384", "PS256", "ES384"] {
      let header = Base64URL.encode(Array(#"{"alg":"\#(alg)"}"#.utf8))
      XCTAssertThrowsError(try SignedToken.parse("\(header).\(claims).")) { error in
        XCTAssertEqual(error as? SignedToken.Failure, .algorithm(alg))
      }
    }
    let crit = Base64URL.encode(Array(#"{"alg":"RS256","crit":["x"]}"#.utf8))
    XCTAssertThrowsError(try SignedToken.parse("\(crit).\(claims).AAAA"))
    XCTAssertThrowsError(try SignedToken.parse("a.b"))
  }

  func testRepeatedMembersAndNonCanonicalBase64URLAreMalformed() throws {
    let sig = Base64URL.encode([UInt8](repeating: 7, count: 64))
    func parse(_ header: String, _ claims: String, signature: String = sig) throws -> SignedToken {
      try SignedToken.parse(
        "\(Base64URL.encode(Array(header.utf8))).\(Base64URL.encode(Array(claims.utf8))).\(signature)"
      )
    }
    XCTAssertNoThrow(try parse(#"{"alg":"ES256"}"#, #"{"a":{"b":1},"c":[{"b":2},{"b":3}]}"#))
    for (header, claims) in [
      (#"{"alg":"ES256","alg":"ES256"}"#, #"{"exp":1}"#),
      (#"{"alg":"ES256","kid":1}"#, #"{"exp":1}"#),
      (#"{"alg":"ES256","kid":null}"#, #"{"exp":1}"#),
      (#"{"alg":"ES256"}"#, #"{"exp":1,"exp":2}"#),
      (#"{"alg":"ES256"}"#, #"{"exp":1,"\u0065xp":2}"#),
      (#"{"alg":"ES256"}"#, #"{"x":{"y":1,"y":1}}"#),
      (#"{"alg":"ES256"}"#, #"{"x":[{"y":"\"","y":1}]}"#),
    ] {
      XCTAssertThrowsError(try parse(header, claims), claims) { error in
        XCTAssertEqual(error as? SignedToken.Failure, .malformed)
      }
    }
    XCTAssertNil(JSONReading.objectWithUniqueMembers(Array(#"{"a":1,"a":1}"#.utf8)))
    XCTAssertNotNil(JSONReading.objectWithUniqueMembers(Array(#"{"a":"a","b":{"a":1}}"#.utf8)))
    XCTAssertNotNil(JSONReading.objectWithUniqueMembers(Array(#"{"a\\":1,"a":2}"#.utf8)))
    XCTAssertNotNil(
      JSONReading.objectWithUniqueMembers(Array(#"{"a":"{\"a\":[","b":[1,{"a":2}]}"#.utf8)))
    // Names Swift compares equal (canonical equivalence), written differently.
    XCTAssertNil(JSONReading.objectWithUniqueMembers(Array("{\"\u{E9}\":1,\"e\u{301}\":2}".utf8)))
    // Padding and spare bits that are not zero: other spellings of the same bytes.
    XCTAssertThrowsError(try parse(#"{"alg":"ES256"}"#, "{}", signature: sig + "="))
    XCTAssertEqual(Base64URL.decodeCanonical("QQ"), [0x41])
    XCTAssertNil(Base64URL.decodeCanonical("QR"))
    XCTAssertNil(Base64URL.decodeCanonical("QQ=="))
    XCTAssertNil(Base64URL.decodeCanonical("Q+"))
  }

  func testUnusableJWKsAreSkipped() throws {
    let (_, small) = try rsaKey(1024, kid: "small")
    XCTAssertNil(VerificationKey.fromJWK(small), "RSA under 2048 bits")
    let (_, rsa) = try rsaKey(kid: "r")
    var enc = rsa
    enc["use"] = "enc"
    XCTAssertNil(VerificationKey.fromJWK(enc))
    var hs = rsa
    hs["alg"] = "HS256"
    XCTAssertNil(VerificationKey.fromJWK(hs))
    let (_, ec) = try ecKey(kid: "e")
    var offCurve = ec
    offCurve["y"] = Base64URL.encode([UInt8](repeating: 7, count: 32))
    XCTAssertNil(VerificationKey.fromJWK(offCurve), "a point not on P-256")
    XCTAssertNil(VerificationKey.fromJWK(["kty": "oct", "k": "c2VjcmV0"]))
    let jwks = try JSONSerialization.data(withJSONObject: ["keys": [rsa, enc, ec, small]])
    XCTAssertEqual(VerificationKey.parseJWKS([UInt8](jwks)).compactMap(\.kid), ["r", "e"])
  }

  func testGitHubAppJWTVerifiesWithOpenSSLAndTheTokenAnswerIsParsed() throws {
    let (pem, _) = try rsaKey(kid: "app")
    try openssl(["pkey", "-in", pem, "-pubout", "-out", path("app.pub")])
    let spec = GitHubAppSpec(
      appID: "123", installationID: "45", privateKey: .literal("unused"),
      apiURL: "https://ghe.example.com/api/v3", repositories: ["deploy"],
      permissions: [.init(name: "contents", level: "read")])
    let text = try String(contentsOfFile: pem, encoding: .utf8)
    let app = GitHubAppInstallation(
      spec: spec, signer: try RSASigner(pem: text), privateKeyPEM: text)
    let jwt = try app.appJWT(now: 1_800_000_000)
    let parts = jwt.split(separator: ".")
    try Data("\(parts[0]).\(parts[1])".utf8).write(to: URL(fileURLWithPath: path("in")))
    try Data(Base64URL.decode(parts[2])!).write(to: URL(fileURLWithPath: path("sig")))
    XCTAssertEqual(
      String(
        decoding: try openssl([
          "dgst", "-sha256", "-verify", path("app.pub"), "-signature", path("sig"), path("in"),
        ]), as: UTF8.self
      ).trimmingCharacters(in: .whitespacesAndNewlines), "Verified OK")
    let claims =
      try JSONSerialization.jsonObject(with: Data(Base64URL.decode(parts[1])!)) as! [String: Any]
    XCTAssertEqual(claims["iss"] as? Int, 123)
    XCTAssertEqual(claims["iat"] as? Int, 1_800_000_000 - 60)
    XCTAssertEqual(claims["exp"] as? Int, 1_800_000_000 + 540)

    let request = app.tokenRequest(appJWT: jwt)
    XCTAssertEqual(request.method, "POST")
    XCTAssertEqual(request.url, "https://ghe.example.com/api/v3/app/installations/45/access_tokens")
    XCTAssertEqual(
      String(decoding: request.body, as: UTF8.self),
      #"{"repositories":["deploy"],"permissions":{"contents":"read"}}"#)

    let ok = GitHubAppInstallation.parseToken(
      status: 201, body: Array(#"{"token":"ghs_abc","expires_at":"2027-01-01T00:00:00Z"}"#.utf8),
      source: "GitHub API")
    XCTAssertEqual(try ok.get().value, "ghs_abc")
    XCTAssertEqual(try ok.get().expiresAt, 1_798_761_600 - 300)
    guard
      case .failure(let e) = GitHubAppInstallation.parseToken(
        status: 422, body: Array(#"{"message":"not granted"}"#.utf8), source: "GitHub API")
    else { return XCTFail() }
    XCTAssertEqual(e.description, "GitHub API HTTP 422: not granted")
    XCTAssertFalse(e.retryable)
    guard
      case .failure(let bad) = GitHubAppInstallation.parseToken(
        status: 201, body: Array(#"{"token":"ghs_abc"}"#.utf8), source: "GitHub API")
    else { return XCTFail() }
    XCTAssertEqual(bad.error, "invalid_response")
  }
}
