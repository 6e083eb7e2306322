import Glibc

/// What clients need to trust the local CA: a combined bundle (system roots + the CA, because
/// `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE` and friends replace the system store instead of adding
/// to it) and, per client, the variable, command or file that points at it.
public struct TrustSetup: Sendable {
  /// The CA certificate file (`ca-cert`).
  public var caPath: String
  /// The combined bundle `credproxy trust` writes.
  public var bundlePath: String
  /// Where the Java trust store copy goes.
  public var javaStorePath: String

  public init(caPath: String, bundlePath: String) {
    self.caPath = caPath
    self.bundlePath = bundlePath
    let dir = bundlePath.lastIndex(of: "/").map { String(bundlePath[..<$0]) } ?? "."
    self.javaStorePath = (dir.isEmpty ? "" : dir) + "/cacerts.jks"
  }

  /// System stores, in the order distributions put them (Debian/Ubuntu/Alpine, RHEL/Fedora,
  /// openSUSE, macOS/BSD).
  public static let systemStoreCandidates = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
  ]

  /// The JDK's own trust store to copy: `$JAVA_HOME`'s, else that of the `java` on `PATH`
  /// (symlinks resolved, as Debian's `/usr/bin/java` is one), else Debian's shared Java store.
  /// nil when none is found (the instructions then name `$JAVA_HOME/lib/security/cacerts`).
  public static func javaStore(environment: [String: String]) -> String? {
    var candidates: [String] = []
    if let home = environment["JAVA_HOME"], !home.isEmpty {
      candidates.append(home + "/lib/security/cacerts")
    }
    for dir in (environment["PATH"] ?? "").split(separator: ":") where !dir.isEmpty {
      guard let real = realpath(dir + "/java", nil) else { continue }
      defer { free(real) }
      // …/bin/java → …/lib/security/cacerts
      var home = String(cString: real).split(separator: "/", omittingEmptySubsequences: false)
      guard home.count > 2 else { break }
      home.removeLast(2)
      candidates.append(home.joined(separator: "/") + "/lib/security/cacerts")
      break
    }
    candidates.append("/etc/ssl/certs/java/cacerts")
    return candidates.first(where: Files.exists)
  }

  /// The environment variables and their values, in the order they are printed.
  public var environment: [(name: String, value: String, note: String)] {
    [
      (
        "SSL_CERT_FILE", bundlePath,
        "OpenSSL-based tools, Python's ssl and httpx, Ruby, Go on Linux"
      ),
      ("REQUESTS_CA_BUNDLE", bundlePath, "Python requests (and pip)"),
      ("CURL_CA_BUNDLE", bundlePath, "curl and libcurl-based tools"),
      ("NODE_EXTRA_CA_CERTS", caPath, "Node.js: adds to its built-in roots, so the CA alone"),
      ("GIT_SSL_CAINFO", bundlePath, "git over https"),
    ]
  }

  /// Writes the bundle: the first system store found, then the CA. Returns the store used
  /// (nil when none was found: the bundle then holds the CA alone).
  @discardableResult
  public func writeBundle(caPEM: String, systemStore: String? = nil) throws(LocalCAError)
    -> String?
  {
    let candidates = systemStore.map { [$0] } ?? Self.systemStoreCandidates
    var roots: [UInt8] = []
    var used: String?
    for path in candidates where Files.exists(path) {
      roots = try Files.read(path, what: "system trust store")
      used = path
      break
    }
    if !roots.isEmpty && roots.last != UInt8(ascii: "\n") { roots.append(UInt8(ascii: "\n")) }
    let tail = "\n# credproxy local CA (\(caPath))\n" + caPEM
    try Files.replace(bundlePath, mode: 0o644, contents: roots + Array(tail.utf8))
    return used
  }

  /// `export NAME='value'` lines that `eval` in sh and bash.
  public func shellExports() -> String {
    environment.map { "export \($0.name)=\(Self.shellQuoted($0.value))\n" }.joined()
  }

  /// The full instructions.
  public func instructions(ca: LocalCA, systemStore: String?, javaStore: String? = nil) -> String {
    let q = Self.shellQuoted
    var out = "credproxy local CA: \(caPath)\n"
    out += "  subject: \(ca.subject)\n"
    out += "  valid until: \(LocalCA.dateText(ca.notAfter))\n"
    out +=
      "  name constraints: "
      + (ca.nameConstraints
        ?? "none: the CA key can sign for any site; keep it as safe as a password")
      + "\n"
    out += "combined bundle (system roots"
    out += systemStore.map { " from \($0)" } ?? " — none found, so the CA alone"
    out += " + this CA): \(bundlePath)\n\n"
    out +=
      "Environment (or: eval \"$(credproxy trust --shell)\"); these replace the system store,\n"
    out += "hence the combined bundle:\n"
    let width = environment.map { "export \($0.name)=\(q($0.value))".count }.max() ?? 0
    for e in environment {
      let line = "export \(e.name)=\(q(e.value))"
      out += "  " + line + String(repeating: " ", count: width - line.count) + "  # \(e.note)\n"
    }
    out += "\ngcloud (its own store setting):\n"
    out += "  gcloud config set core/custom_ca_certs_file \(q(bundlePath))\n"
    out += "\nJava (a copy of the JDK's store with the CA added):\n"
    out += "  cp \(javaStore.map(q) ?? "\"$JAVA_HOME/lib/security/cacerts\"") \(q(javaStorePath))\n"
    out +=
      "  keytool -importcert -noprompt -alias credproxy-local-ca -file \(q(caPath)) -keystore \(q(javaStorePath)) -storepass changeit\n"
    out +=
      "  export JAVA_TOOL_OPTIONS=\(q("-Djavax.net.ssl.trustStore=\(javaStorePath) -Djavax.net.ssl.trustStorePassword=changeit"))\n"
    out += "\nDebian/Ubuntu system store (every program on the machine; as root):\n"
    out +=
      "  cp \(q(caPath)) /usr/local/share/ca-certificates/credproxy.crt && update-ca-certificates\n"
    return out
  }

  /// `'value'` with embedded quotes escaped; bare when only safe characters.
  public static func shellQuoted(_ s: String) -> String {
    let safe = s.utf8.allSatisfy { c in
      (c >= 0x61 && c <= 0x7a) || (c >= 0x41 && c <= 0x5a) || (c >= 0x30 && c <= 0x39)
        || "/._-+=:,@%".utf8.contains(c)
    }
    if safe && !s.isEmpty { return s }
    return "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'"
  }
}

extension String {
  fileprivate func replacingOccurrences(of target: String, with replacement: String) -> String {
    split(separator: Character(target), omittingEmptySubsequences: false).joined(
      separator: replacement)
  }
}
