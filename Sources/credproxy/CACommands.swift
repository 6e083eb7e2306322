import CredproxyConfig
import Foundation
import LocalCA

// `credproxy ca init|export|leaf` and `credproxy trust`: the local CA for `intercept` routes.
// The CA key is never printed: commands report its path and mode only.

let caUsage = """
  usage: credproxy ca init   [--dir D] [--config PATH] [--force]
         credproxy ca export [--dir D] [--config PATH]
         credproxy ca leaf HOST [--out DIR] [--dir D] [--config PATH]

  The local CA that signs a leaf certificate per host on `intercept` routes.
  init     create the CA: an ECDSA P-256 key (mode 0600, never printed) and a self-signed
           certificate, valid 10 years. When every intercept route in the config names its hosts
           (exact names, *.suffix or IP addresses), the certificate is name-constrained to them,
           so the key cannot sign for other sites. Refuses (exit 1) when the files exist, unless
           --force: clients that trust the old CA would stop working.
  export   print the CA certificate (PEM) on stdout.
  leaf     mint a leaf for HOST as the proxy would and write HOST.pem, HOST-chain.pem and
           HOST-key.pem (0600; a key made for this command, not the proxy's) into DIR (default
           .); says whether it verifies against the CA.

  Where the CA is: D/ca.pem and D/ca-key.pem with --dir; else the config's ca-cert and ca-key;
  else ./credproxy-ca/. The config is --config PATH, else ./proxy.conf when it exists.
  """

let trustUsage = """
  usage: credproxy trust [--config PATH] [--dir D] [--shell] [--out DIR]

  Prints what each client needs to trust the local CA and writes a combined bundle (the system
  roots plus the CA) to DIR/ca-bundle.pem (default: next to the CA certificate):
  SSL_CERT_FILE, REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE and GIT_SSL_CAINFO replace the system store,
  so they get the bundle; NODE_EXTRA_CA_CERTS adds to Node's roots, so it gets the CA alone.
  Also gcloud's core/custom_ca_certs_file, a Java trust store, Debian's update-ca-certificates.
  --shell   print only `export NAME=value` lines, for eval "$(credproxy trust --shell)"
  """

struct CAOptions {
  var sub = ""
  var dir: String?
  var config: String?
  var force = false
  var shell = false
  var out: String?
  var host: String?
}

func parseCAArguments(_ args: [String]) throws(UsageError) -> CAOptions? {
  var rest = ArraySlice(args)
  let command = rest.popFirst()!
  var o = CAOptions()
  if command == "ca" {
    guard let sub = rest.popFirst() else {
      throw UsageError(message: "ca needs a subcommand: init, export or leaf")
    }
    if sub == "--help" || sub == "-h" {
      print(caUsage)
      return nil
    }
    guard ["init", "export", "leaf"].contains(sub) else {
      throw UsageError(message: "unknown ca subcommand \"\(sub)\"; expected init, export or leaf")
    }
    o.sub = sub
  } else {
    o.sub = "trust"
  }
  func value(_ flag: String) throws(UsageError) -> String {
    guard let v = rest.popFirst() else { throw UsageError(message: "\(flag) needs a value") }
    return v
  }
  while let arg = rest.popFirst() {
    switch arg {
    case "--help", "-h":
      print(command == "ca" ? caUsage : trustUsage)
      return nil
    case "--config", "-c": o.config = try value(arg)
    case "--dir": o.dir = try value(arg)
    case "--force" where o.sub == "init": o.force = true
    case "--shell" where o.sub == "trust": o.shell = true
    case "--out" where o.sub == "trust" || o.sub == "leaf": o.out = try value(arg)
    default:
      if o.sub == "leaf" && o.host == nil && !arg.hasPrefix("-") {
        o.host = arg
      } else {
        let name = command == "ca" ? "ca \(o.sub)" : command
        throw UsageError(message: "unexpected argument \"\(arg)\" for \(name)")
      }
    }
  }
  if o.sub == "leaf" && o.host == nil {
    throw UsageError(message: "ca leaf needs a host, e.g. credproxy ca leaf api.example.com")
  }
  return o
}

/// The config named by --config (must load), else ./proxy.conf when it exists, else none.
func caConfig(_ o: CAOptions) -> (config: ProxyConfig?, path: String?) {
  if let path = o.config { return (load(path), path) }
  if FileManager.default.fileExists(atPath: "proxy.conf") {
    return (load("proxy.conf"), "proxy.conf")
  }
  return (nil, nil)
}

/// Where the CA's files are: --dir, else ca-cert/ca-key, else ./credproxy-ca/.
func caPaths(_ o: CAOptions, _ config: ProxyConfig?) -> (cert: String, key: String) {
  if let dir = o.dir { return (dir + "/ca.pem", dir + "/ca-key.pem") }
  return config?.caFiles ?? ProxyConfig.defaultCAFiles
}

func absolute(_ path: String) -> String {
  path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
}

func loadCA(_ paths: (cert: String, key: String)) -> LocalCA {
  do {
    return try LocalCA.load(certPath: paths.cert, keyPath: paths.key)
  } catch {
    fail("credproxy: \(error)\n(make one with: credproxy ca init)", code: 1)
  }
}

func runCACommand(_ args: [String]) -> Never {
  let o: CAOptions
  do {
    guard let parsed = try parseCAArguments(args) else { exit(0) }
    o = parsed
  } catch {
    fail("credproxy: \(error.message)\n\n\(args.first == "ca" ? caUsage : trustUsage)", code: 2)
  }
  let (config, configPath) = caConfig(o)
  let paths = caPaths(o, config)
  switch o.sub {
  case "init": caInit(o, config, configPath, paths)
  case "export":
    print(loadCA(paths).certificatePEM, terminator: "")
    exit(0)
  case "leaf": caLeaf(o, paths)
  default: trust(o, paths, config)
  }
}

func caInit(
  _ o: CAOptions, _ config: ProxyConfig?, _ configPath: String?,
  _ paths: (cert: String, key: String)
) -> Never {
  let nc = config?.interceptNameConstraints
  var permitted: [PermittedName] = []
  var why: String?
  if let nc, nc.constrainable {
    permitted = nc.names.map {
      switch $0 {
      case .dns(let n): return .dns(n)
      case .subdomains(let s): return .subdomains(of: s)
      case .ip(let a): return .ip(a)
      }
    }
  } else if let nc, !nc.blockers.isEmpty {
    why =
      nc.blockers.map { "route #\($0.route) (line \($0.line)) intercepts \($0.pattern)" }
      .joined(separator: "; ") + ", which cannot be name-constrained"
  } else {
    why =
      configPath.map { "no intercept routes in \($0) to constrain it to" }
      ?? "no config (./proxy.conf or --config) to take intercept routes from"
  }
  let ca: LocalCA
  do {
    ca = try LocalCA.create(commonName: LocalCA.defaultCommonName(), permitted: permitted)
    try ca.write(certPath: paths.cert, keyPath: paths.key, force: o.force)
  } catch {
    fail("credproxy: \(error)", code: 1)
  }
  var out = "credproxy: created the local CA\n"
  out += "  certificate: \(paths.cert)\n"
  out += "  key: \(paths.key) (mode 0600; never printed)\n"
  out += "  subject: \(ca.subject)\n"
  out += "  valid until: \(LocalCA.dateText(ca.notAfter))\n"
  if let text = ca.nameConstraints {
    out += "  name constraints: \(text)\n"
  } else {
    out += "  name constraints: none (\(why ?? "")): the key can sign for any site\n"
  }
  if config?.caCert == nil || o.dir != nil {
    out +=
      "add to proxy.conf:\n  ca-cert \(absolute(paths.cert))\n  ca-key \(absolute(paths.key))\n"
  }
  out += "then: credproxy trust — what clients need to trust it\n"
  print(out, terminator: "")
  exit(0)
}

func caLeaf(_ o: CAOptions, _ paths: (cert: String, key: String)) -> Never {
  let ca = loadCA(paths)
  do {
    let leaf = try ca.leaf(for: o.host!)
    let files = try leaf.writeFiles(directory: o.out ?? ".")
    var out = "leaf for \(leaf.host), signed by \(ca.subject)\n"
    out += "  valid: \(LocalCA.dateText(leaf.notBefore)) to \(LocalCA.dateText(leaf.notAfter))\n"
    out += "  certificate: \(files.certificate)\n  chain: \(files.chain)\n"
    out += "  key: \(files.key) (mode 0600)\n"
    if let why = leaf.verificationError() {
      out += "  verifies against the CA: no (\(why))"
      if why.contains("subtree") { out += ": \(leaf.host) is outside the CA's name constraints" }
      out += "\n"
    } else {
      out += "  verifies against the CA: yes\n"
    }
    print(out, terminator: "")
    exit(0)
  } catch {
    fail("credproxy: \(error)", code: 1)
  }
}

func trust(_ o: CAOptions, _ paths: (cert: String, key: String), _ config: ProxyConfig?) -> Never {
  let ca = loadCA(paths)
  let caPath = absolute(paths.cert)
  let dir = o.out.map(absolute) ?? (caPath as NSString).deletingLastPathComponent
  let setup = TrustSetup(caPath: caPath, bundlePath: dir + "/ca-bundle.pem")
  let store: String?
  do {
    store = try setup.writeBundle(caPEM: ca.certificatePEM)
  } catch {
    fail("credproxy: \(error)", code: 1)
  }
  if o.shell {
    print(setup.shellExports(), terminator: "")
  } else {
    var text = setup.instructions(
      ca: ca, systemStore: store,
      javaStore: TrustSetup.javaStore(environment: ProcessInfo.processInfo.environment))
    let listen =
      config?.listeners.first.map { $0.port == 0 ? "PROXY-HOST:PORT" : "\($0)" } ?? "127.0.0.1:8080"
    text += "\nThen send HTTPS through the proxy: export HTTPS_PROXY=http://\(listen)\n"
    print(text, terminator: "")
  }
  exit(0)
}

/// `check`'s view of the local CA when some route intercepts: which CA, until when, its name
/// constraints, and a warning for every intercepted host it cannot sign for (clients would reject
/// the leaf: the CA was made for another config) or when it expires within 30 days.
func localCACheck(_ config: ProxyConfig) -> CheckReport.LocalCASection? {
  guard config.intercepts else { return nil }
  let files = config.caFiles
  guard FileManager.default.isReadableFile(atPath: files.cert),
    FileManager.default.isReadableFile(atPath: files.key)
  else {
    return .init(lines: ["not loaded: its files cannot be read (see the warnings)"], warnings: [])
  }
  let ca: LocalCA
  do {
    ca = try LocalCA.load(certPath: files.cert, keyPath: files.key)
  } catch {
    return .init(
      lines: ["not loaded"],
      warnings: ["the local CA cannot be loaded: \(error); serve refuses to start without it"])
  }
  var lines = ["subject: \(ca.subject)", "valid until: \(LocalCA.dateText(ca.notAfter))"]
  lines.append(
    "name constraints: "
      + (ca.nameConstraints ?? "none (its key can sign for any site; see `credproxy ca init`)"))
  var warnings: [String] = []
  if ca.notAfter - Int(time(nil)) < 30 * 86_400 {
    warnings.append(
      "the local CA expires on \(LocalCA.dateText(ca.notAfter)); make a new one (credproxy ca init --force) and distribute it with credproxy trust"
    )
  }
  var checked = 0
  for (i, route) in config.routes.enumerated() where route.intercept && !route.deny {
    for pattern in route.patterns {
      let host: String
      switch pattern.host {
      case .any: continue
      case .exact(let h): host = h
      case .suffix(let s): host = "check." + s
      }
      checked += 1
      let why: String?
      do {
        why = try ca.leaf(for: host).verificationError()
      } catch {
        why = error.description
      }
      if let why {
        warnings.append(
          "route #\(i + 1) (line \(route.line)) intercepts \(pattern), but a leaf the local CA signs for \(host) does not verify (\(why)): clients will reject it; make the CA for this config (credproxy ca init --force --config …) and run credproxy trust again"
        )
      }
    }
  }
  let failing = warnings.count { $0.hasPrefix("route #") }
  lines.append(
    failing == 0
      ? "signs for: every intercepted pattern (\(checked) checked with a test leaf)"
      : "signs for: \(checked - failing) of \(checked) intercepted patterns (see the warnings)")
  return .init(lines: lines, warnings: warnings)
}
