import CredproxyConfig
import CredproxyCore
import Foundation
import Glibc

/// credproxy's command line. Exit codes: 0 ok, 1 runtime failure, 2 usage or config error.
let version = credproxyVersion

let usage = """
  usage: credproxy <command> [options]

  commands:
    serve    [--config PATH] [--threads N]    run the proxy
    check    [--config PATH]                  validate the config and print a summary
    explain  URL [--method M] [--mint] [--config PATH]
                                            show which route URL takes and what auth it gets
    ca       init|export|leaf HOST [--dir D] [--config PATH]
                                            the local CA for intercept routes
    trust    [--config PATH] [--shell] [--out DIR]
                                            what clients need to trust the local CA
    --version                                 print the version

  Run `credproxy <command> --help` for a command's options. The config defaults to ./proxy.conf.
  """

let helpTexts: [String: String] = [
  "serve": """
  usage: credproxy serve [--config PATH] [--threads N]

  Runs the proxy with the given config (default ./proxy.conf). Prints
  `credproxy: listening on ADDR:PORT` on stderr for each listener once it accepts connections.
  --threads N   event loop threads (default: one per core)
  SIGTERM or SIGINT stops it.
  """,
  "check": """
  usage: credproxy check [--config PATH]

  Validates the config and prints its listeners, limits and routes (never a secret value).
  Exit 0 when valid, 2 with `file:line:col: message` lines when not.
  """,
  "explain": """
  usage: credproxy explain URL [--method M] [--mint] [--config PATH]

  Shows which route URL would take, where it would be sent and which credential would be added
  (by source, never by value), or why it would be refused. --method defaults to GET.
  --mint        also mint (or reuse) the token URL would get and print its kind, credential,
                scopes or audience, fingerprint and expiry (never the token); exit 1 if that fails
  """,
]

struct UsageError: Error { var message: String }

struct Options {
  var command: String
  var config = "proxy.conf"
  var method = "GET"
  var threads: Int?
  var url: String?
  var mint = false
}

func parseArguments(_ args: [String]) throws(UsageError) -> Options? {
  guard let command = args.first else { throw UsageError(message: "missing command") }
  switch command {
  case "--version", "version":
    print("credproxy \(version)")
    return nil
  case "--help", "-h", "help":
    print(usage)
    return nil
  case "serve", "check", "explain":
    break
  default:
    throw UsageError(
      message: "unknown command \"\(command)\"; expected serve, check, explain, ca or trust")
  }
  var options = Options(command: command)
  var rest = args.dropFirst()
  func value(_ flag: String) throws(UsageError) -> String {
    guard let v = rest.popFirst() else { throw UsageError(message: "\(flag) needs a value") }
    return v
  }
  while let arg = rest.popFirst() {
    switch arg {
    case "--help", "-h":
      print(helpTexts[command]!)
      return nil
    case "--config", "-c":
      options.config = try value(arg)
    case "--method" where command == "explain", "-X" where command == "explain":
      options.method = try value(arg).uppercased()
    case "--mint" where command == "explain":
      options.mint = true
    case "--threads" where command == "serve":
      let text = try value(arg)
      guard let n = Int(text), n > 0, n <= 256 else {
        throw UsageError(message: "--threads takes a number from 1 to 256, not \"\(text)\"")
      }
      options.threads = n
    default:
      if command == "explain" && options.url == nil && !arg.hasPrefix("-") {
        options.url = arg
      } else {
        throw UsageError(message: "unexpected argument \"\(arg)\" for \(command)")
      }
    }
  }
  if command == "explain" {
    guard let url = options.url else {
      throw UsageError(
        message: "explain needs a URL, e.g. credproxy explain http://api.example.com/v1/x")
    }
    let lower = url.lowercased()
    guard lower.hasPrefix("http://") || lower.hasPrefix("https://") else {
      throw UsageError(
        message: "explain takes an absolute http:// or https:// URL, not \"\(url)\"")
    }
  }
  return options
}

func fail(_ message: String, code: Int32) -> Never {
  FileHandle.standardError.write(Data((message + "\n").utf8))
  exit(code)
}

func load(_ path: String) -> ProxyConfig {
  do {
    return try loadConfig(path: path)
  } catch let error as ConfigError {
    fail(error.description, code: 2)
  } catch {
    fail("\(path): \(error)", code: 2)
  }
}

/// The signals the main thread handles; blocked in every thread (the loops inherit the mask) and
/// taken here with sigwait, so no handler ever runs on a loop thread.
func controlSignals() -> sigset_t {
  var set = sigset_t()
  sigemptyset(&set)
  sigaddset(&set, SIGTERM)
  sigaddset(&set, SIGINT)
  sigaddset(&set, SIGHUP)
  return set
}

func serve(_ options: Options) -> Never {
  let config = load(options.config)
  var signals = controlSignals()
  pthread_sigmask(SIG_BLOCK, &signals, nil)
  ProxyServer.prepareProcess()
  if let refused = LibcurlCheck.refusedSecurityOption() {
    fail("credproxy: libcurl refused \(refused); refusing to serve without it", code: 1)
  }
  let server: ProxyServer
  do {
    server = try ProxyServer(
      config: config,
      loopCount: options.threads ?? ProcessInfo.processInfo.activeProcessorCount)
    try server.start()
  } catch {
    fail("credproxy: \(error)", code: 1)
  }
  for address in server.boundAddresses {
    FileHandle.standardError.write(Data("credproxy: listening on \(address)\n".utf8))
  }
  if let admin = server.adminAddress { log("admin listening on \(admin)") }
  var shutdownTimeout = Double(config.shutdownTimeoutMs) / 1000
  while true {
    var signal: Int32 = 0
    sigwait(&signals, &signal)
    if signal == SIGHUP {
      // A bad new config is rejected with its errors logged; the old one keeps serving.
      do {
        let next = try loadConfig(path: options.config)
        for note in try server.reload(config: next) { log("reload: \(note)") }
        shutdownTimeout = Double(next.shutdownTimeoutMs) / 1000
        log("reloaded \(options.config): \(next.routes.count) routes")
      } catch {
        log("reload failed, keeping the running config:\n\(error)")
      }
      continue
    }
    log("stopping: finishing in-flight requests (up to \(Int(shutdownTimeout)) s)")
    let left = server.drain(deadline: shutdownTimeout)
    if left > 0 { log("stopped with \(left) connections still open at the deadline") }
    // _exit, not exit: the loops are stopped, but a resolver thread may still be inside libcurl or
    // libcrypto, and exit's atexit handlers would tear those libraries down under it.
    _exit(0)
  }
}

func log(_ message: String) {
  FileHandle.standardError.write(Data("credproxy: \(message)\n".utf8))
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "ca" || arguments.first == "trust" { runCACommand(arguments) }
do {
  guard let options = try parseArguments(arguments) else { exit(0) }
  switch options.command {
  case "serve":
    serve(options)
  case "check":
    let config = load(options.config)
    print(
      CheckReport.render(config, environment: ProcessInfo.processInfo.environment), terminator: "")
    exit(0)
  case "explain":
    let config = load(options.config)
    let result = Explain.render(
      config: config, url: options.url!, method: options.method,
      environment: ProcessInfo.processInfo.environment)
    print(result.text, terminator: result.text.hasSuffix("\n") ? "" : "\n")
    if options.mint && result.allowed {
      ProxyServer.prepareProcess()
      let minted = TokenProbe.mint(config: config, url: options.url!, method: options.method)
      print(minted.text, terminator: "")
      exit(minted.ok ? 0 : 1)
    }
    exit(0)
  default:
    fail(usage, code: 2)
  }
} catch {
  fail("credproxy: \(error.message)\n\n\(usage)", code: 2)
}
