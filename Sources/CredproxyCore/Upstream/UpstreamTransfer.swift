import CCurl
import CSystem
import CredproxyConfig
import Glibc
import HTTP1
import Wire

/// What to send upstream, already decided by the proxy (URL, method, final header lines).
struct UpstreamRequest {
  var url: String
  var method: String
  /// `Name: value` lines in order; an empty value is written `Name;` (curl's spelling for it).
  var headerLines: [String]
  /// nil: no body. -1: unknown length (sent chunked on HTTP/1.1, as DATA frames on HTTP/2).
  var bodyLength: Int64?
  /// The route's prepared upstream side (`connect-to`, handle pool key); nil for our own
  /// requests (token endpoints), whose handles are reset and configured in full every time.
  var route: RouteUpstream?
  var caFile: String?
  var caPath: String?
  var connectTimeoutMs: Int
  /// The route's `upstream-http`; our own requests (token endpoints) leave curl's choice to ALPN.
  var httpVersion: UpstreamHTTPVersion = .auto
  /// Whole-transfer limit; only for our own small requests (token endpoints), never for proxied
  /// ones, whose bodies may stream for hours.
  var totalTimeoutMs: Int? = nil
  /// SSRF rules for the dialled address; nil for our own requests (token endpoints).
  var dialCheck: DialCheck? = nil
  /// The request-target curl sends instead of the URL's path (`*` for `OPTIONS *`).
  var requestTarget: String? = nil
  /// A credential rides on plain http: it may only cross a loopback connection.
  var credentialNeedsLoopback = false
  /// The loop's recent allows, so keep-alive requests skip re-vetting the same address.
  var verdicts: AddressVerdicts? = nil
}

/// The connection side of a transfer. All calls arrive on the loop thread, from curl callbacks.
protocol UpstreamTransferDelegate: AnyObject {
  /// The final response head; `framing` is computed from it (see `UpstreamHeadReader`).
  func upstreamDidReceiveHead(status: Int, headers: [HeaderField], framing: ResponseBodyFraming)
  /// Returns false to pause the download until `resumeReceiving` (the client is not keeping up).
  func upstreamDidReceiveBody(_ bytes: UnsafeRawBufferPointer) -> Bool
  /// Fills `buffer` with request body bytes: > 0 bytes, 0 for end of body, nil to pause.
  /// `.failure` aborts the transfer (the client sent a malformed body).
  func upstreamWantsBody(into buffer: UnsafeMutableRawBufferPointer) -> BodyChunk
  func upstreamDidFinish(error: UpstreamError?)
}

enum BodyChunk {
  case bytes(Int)
  case end
  case wait
  case failure
}

/// Why an upstream transfer failed, mapped onto what the caller is told.
struct UpstreamError: Error {
  var code: ErrorCode
  var message: String

  init(_ code: ErrorCode, message: String) {
    self.code = code
    self.message = message
  }

  init(curl: CURLcode, detail: String) {
    message = detail.isEmpty ? cString(curl_easy_strerror(curl)) : detail
    switch curl {
    case CURLE_COULDNT_RESOLVE_HOST: code = .upstreamDNS
    case CURLE_COULDNT_CONNECT: code = .upstreamConnect
    case CURLE_OPERATION_TIMEDOUT: code = .upstreamTimeout
    case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM,
      CURLE_SSL_CIPHER, CURLE_SSL_CACERT_BADFILE, CURLE_SSL_ISSUER_ERROR,
      CURLE_SSL_PINNEDPUBKEYNOTMATCH, CURLE_SSL_INVALIDCERTSTATUS, CURLE_SSL_CRL_BADFILE:
      code = .upstreamTLS
    case CURLE_ABORTED_BY_CALLBACK, CURLE_WRITE_ERROR, CURLE_READ_ERROR: code = .aborted
    default: code = .upstreamProtocol
    }
  }
}

/// One request/response exchange with an upstream, on one easy handle (after swift-corelibs-
/// foundation's EasyHandle: the handle's callbacks are C functions that find this object again
/// through CURLOPT_PRIVATE / the user-data pointers).
final class UpstreamTransfer {
  private(set) var easy: UnsafeMutableRawPointer!
  weak var delegate: UpstreamTransferDelegate?
  /// In the multi handle (added and not yet removed).
  var isActive = false
  var sendPaused = false
  var receivePaused = false
  private(set) var headReceived = false
  private var headerList: UnsafeMutablePointer<curl_slist>?
  /// Keeps the route's `connect-to` list alive while curl may read it.
  private var route: RouteUpstream?
  /// The route pool this handle may go back to once the transfer ended cleanly (CurlMulti).
  var poolKey: DialCheck.RouteKey? { route?.key }
  private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)
  private var head: UpstreamHeadReader
  private var dialCheck: DialCheck?
  private var credentialNeedsLoopback = false
  private var verdicts: AddressVerdicts?
  /// Why this transfer was stopped by one of our own checks, and what the caller is told.
  private(set) var refusal: UpstreamError?
  /// Set when report mode let a refused address through.
  private(set) var reportedReason: String?
  /// libcurl refused a security-relevant option: this transfer must not run.
  private(set) var setupFailed = false

  /// The options that keep a credential where policy says, set on every handle, each return
  /// code checked: no redirects (a token must not follow one), no proxy from our own environment,
  /// http and https only, TLS verification on, no signals.
  static func applySecurityOptions(_ easy: UnsafeMutableRawPointer, _ check: inout SetoptCheck) {
    check("CURLOPT_NOSIGNAL", cp_easy_setopt_long(easy, CURLOPT_NOSIGNAL, 1))
    check("CURLOPT_FOLLOWLOCATION", cp_easy_setopt_long(easy, CURLOPT_FOLLOWLOCATION, 0))
    check("CURLOPT_PROTOCOLS_STR", cp_easy_setopt_ptr(easy, CURLOPT_PROTOCOLS_STR, "http,https"))
    check("CURLOPT_PROXY", cp_easy_setopt_ptr(easy, CURLOPT_PROXY, ""))
    check("CURLOPT_SSL_VERIFYPEER", cp_easy_setopt_long(easy, CURLOPT_SSL_VERIFYPEER, 1))
    check("CURLOPT_SSL_VERIFYHOST", cp_easy_setopt_long(easy, CURLOPT_SSL_VERIFYHOST, 2))
  }

  /// At start-up: whether this libcurl accepts every security-relevant option and hook we set;
  /// the name of the first one it refuses, or nil. The process does not serve if it refuses one.
  static func refusedSecurityOption() -> String? {
    guard let easy = curl_easy_init() else { return "curl_easy_init" }
    defer { curl_easy_cleanup(easy) }
    var check = SetoptCheck()
    applySecurityOptions(easy, &check)
    check("CURLOPT_OPENSOCKETFUNCTION", cp_easy_setopt_opensocket_cb(easy, openSocketCallback))
    check("CURLOPT_PREREQFUNCTION", cp_easy_setopt_prereq_cb(easy, prereqCallback))
    check("CURLOPT_CONNECT_TO", cp_easy_setopt_ptr(easy, CURLOPT_CONNECT_TO, nil))
    return check.refused
  }

  /// `configured`: the handle comes from the route's pool, already configured for this route by
  /// an earlier transfer (same route key): only this request's own options are set.
  init(handle: UnsafeMutableRawPointer, configured: Bool, request: UpstreamRequest) {
    easy = handle
    head = UpstreamHeadReader(requestMethod: request.method)
    errorBuffer[0] = 0
    route = request.route
    var check = SetoptCheck()
    if !configured { configureRoute(request, &check) }
    configureRequest(request, &check)
    if let refused = check.refused {
      // Never sent: the transfer fails before curl touches the network (see CurlMulti.start).
      refusal = UpstreamError(.upstreamProtocol, message: "libcurl refused \(refused)")
      setupFailed = true
    }
  }

  deinit {
    if let headerList { curl_slist_free_all(headerList) }
    errorBuffer.deallocate()
  }

  /// What is the same for every request on a route: security options, trust, protocol,
  /// timeouts, buffers, the callbacks. Set on a fresh (or reset) handle; a handle in a route's
  /// pool keeps them, and nothing per request changes them.
  private func configureRoute(_ r: UpstreamRequest, _ check: inout SetoptCheck) {
    Self.applySecurityOptions(easy, &check)
    cp_easy_setopt_long(easy, CURLOPT_PATH_AS_IS, 1)
    cp_easy_setopt_long(easy, CURLOPT_HTTP_CONTENT_DECODING, 0)
    if let ca = r.caFile { check("CURLOPT_CAINFO", cp_easy_setopt_ptr(easy, CURLOPT_CAINFO, ca)) }
    if let path = r.caPath {
      check("CURLOPT_CAPATH", cp_easy_setopt_ptr(easy, CURLOPT_CAPATH, path))
    }
    let tls = r.url.hasPrefix("https:")
    let version: Int
    switch r.httpVersion {
    case .http11: version = CP_HTTP_VERSION_1_1
    case .http2: version = CP_HTTP_VERSION_2_PRIOR_KNOWLEDGE
    case .auto: version = CP_HTTP_VERSION_2TLS
    }
    cp_easy_setopt_long(easy, CURLOPT_HTTP_VERSION, version)
    // Waiting for a connection that might multiplex only pays where h2 is possible: otherwise
    // every request would queue behind the first one's connection.
    if r.httpVersion == .http2 || (r.httpVersion == .auto && tls) {
      cp_easy_setopt_long(easy, CURLOPT_PIPEWAIT, 1)
    }
    cp_easy_setopt_long(easy, CURLOPT_TCP_NODELAY, 1)
    cp_easy_setopt_long(easy, CURLOPT_CONNECTTIMEOUT_MS, r.connectTimeoutMs)
    if let total = r.totalTimeoutMs { cp_easy_setopt_long(easy, CURLOPT_TIMEOUT_MS, total) }
    cp_easy_setopt_long(easy, CURLOPT_BUFFERSIZE, 64 * 1024)
    cp_easy_setopt_long(easy, CURLOPT_UPLOAD_BUFFERSIZE, 64 * 1024)
    if r.dialCheck != nil {
      check("CURLOPT_OPENSOCKETFUNCTION", cp_easy_setopt_opensocket_cb(easy, openSocketCallback))
    }
    if r.dialCheck != nil || r.credentialNeedsLoopback {
      // Opening a socket is not enough: curl reuses pooled connections without asking, so the
      // address is vetted again for every request, on the connection it will go out on.
      check("CURLOPT_PREREQFUNCTION", cp_easy_setopt_prereq_cb(easy, prereqCallback))
    }
    if let list = r.route?.connectTo {
      check("CURLOPT_CONNECT_TO", cp_easy_setopt_ptr(easy, CURLOPT_CONNECT_TO, list))
    }
    cp_easy_setopt_data_cb(easy, CURLOPT_READFUNCTION, readCallback)
    cp_easy_setopt_data_cb(easy, CURLOPT_HEADERFUNCTION, headerCallback)
    cp_easy_setopt_data_cb(easy, CURLOPT_WRITEFUNCTION, writeCallback)
  }

  /// What is this request's own: where the callbacks find this object, the URL, the headers,
  /// the method and body, the request-target. Every one is set on every request, so nothing
  /// of the handle's previous request carries over.
  private func configureRequest(_ r: UpstreamRequest, _ check: inout SetoptCheck) {
    let me = Unmanaged.passUnretained(self).toOpaque()
    cp_easy_setopt_ptr(easy, CURLOPT_PRIVATE, me)
    cp_easy_setopt_ptr(easy, CURLOPT_ERRORBUFFER, errorBuffer)
    cp_easy_setopt_ptr(easy, CURLOPT_HEADERDATA, me)
    cp_easy_setopt_ptr(easy, CURLOPT_WRITEDATA, me)
    cp_easy_setopt_ptr(easy, CURLOPT_READDATA, me)
    check("CURLOPT_URL", cp_easy_setopt_ptr(easy, CURLOPT_URL, r.url))
    dialCheck = r.dialCheck
    credentialNeedsLoopback = r.credentialNeedsLoopback
    verdicts = r.verdicts
    if r.dialCheck != nil {
      check("CURLOPT_OPENSOCKETDATA", cp_easy_setopt_ptr(easy, CURLOPT_OPENSOCKETDATA, me))
    }
    if r.dialCheck != nil || r.credentialNeedsLoopback {
      check("CURLOPT_PREREQDATA", cp_easy_setopt_ptr(easy, CURLOPT_PREREQDATA, me))
    }
    check(
      "CURLOPT_REQUEST_TARGET",
      cp_easy_setopt_ptr(easy, CURLOPT_REQUEST_TARGET, r.requestTarget))

    var list: UnsafeMutablePointer<curl_slist>? = nil
    for line in r.headerLines { list = curl_slist_append(list, line) }
    // curl adds these by default; the caller did not send them, so they must not appear.
    list = curl_slist_append(list, "Expect:")
    headerList = list
    check("CURLOPT_HTTPHEADER", cp_easy_setopt_ptr(easy, CURLOPT_HTTPHEADER, headerList))

    // The method, in the order curl's options override each other: UPLOAD sets PUT (or GET
    // when off), NOBODY then HEAD, CUSTOMREQUEST the word on the request line.
    check("CURLOPT_UPLOAD", cp_easy_setopt_long(easy, CURLOPT_UPLOAD, r.bodyLength != nil ? 1 : 0))
    check(
      "CURLOPT_INFILESIZE_LARGE",
      cp_easy_setopt_off(easy, CURLOPT_INFILESIZE_LARGE, curl_off_t(r.bodyLength ?? -1)))
    check("CURLOPT_NOBODY", cp_easy_setopt_long(easy, CURLOPT_NOBODY, r.method == "HEAD" ? 1 : 0))
    let custom = r.method != "HEAD" && (r.method != "GET" || r.bodyLength != nil)
    check(
      "CURLOPT_CUSTOMREQUEST",
      cp_easy_setopt_ptr(easy, CURLOPT_CUSTOMREQUEST, custom ? r.method : nil))
  }

  /// Stops all further delegate calls (the client went away or the transfer was cancelled).
  func detach() { delegate = nil }

  /// Hands the easy handle back to the multi for reuse.
  func releaseHandle() -> UnsafeMutableRawPointer {
    let h = easy!
    cp_easy_setopt_ptr(h, CURLOPT_PRIVATE, nil)
    // The buffer goes with this object; the next transfer on the handle sets its own.
    cp_easy_setopt_ptr(h, CURLOPT_ERRORBUFFER, nil)
    easy = nil
    return h
  }

  /// Updates curl's pause state to match `sendPaused` / `receivePaused`.
  func applyPauseState() {
    guard isActive else { return }
    var mask: Int32 = 0
    if receivePaused { mask |= Int32(CURLPAUSE_RECV) }
    if sendPaused { mask |= Int32(CURLPAUSE_SEND) }
    curl_easy_pause(easy, mask)
  }

  func finish(_ code: CURLcode) {
    guard let delegate else { return }
    self.delegate = nil
    if code == CURLE_OK {
      if !headReceived {
        delegate.upstreamDidFinish(
          error: UpstreamError(.upstreamProtocol, message: "upstream sent no response"))
      } else {
        delegate.upstreamDidFinish(error: nil)
      }
    } else if let refusal {
      delegate.upstreamDidFinish(error: refusal)
    } else {
      delegate.upstreamDidFinish(error: UpstreamError(curl: code, detail: cString(errorBuffer)))
    }
  }

  fileprivate func onOpenSocket(_ address: UnsafeMutablePointer<curl_sockaddr>) -> curl_socket_t {
    let family = address.pointee.family
    if dialCheck != nil {
      let sa =
        UnsafeRawPointer(address) + MemoryLayout<curl_sockaddr>.offset(of: \curl_sockaddr.addr)!
      guard let ip = DialCheck.ipAddress(sa, length: Int(address.pointee.addrlen)) else {
        refusal = UpstreamError(.blockedAddress, message: "unknown address family \(family)")
        return CP_SOCKET_BAD
      }
      if !permits(ip) { return CP_SOCKET_BAD }
    }
    return socket(
      family, address.pointee.socktype | Int32(SOCK_CLOEXEC.rawValue), address.pointee.protocol)
  }

  /// Every request, new connection or pooled: the address it will actually be sent to.
  fileprivate func onPrerequest(primaryIP: UnsafePointer<CChar>?) -> Int32 {
    let key = dialCheck.map {
      AddressVerdicts.Key(
        route: $0.routeKey, host: $0.host, loopbackOnly: credentialNeedsLoopback)
    }
    if let primaryIP, let key, let verdicts, verdicts.allows(primaryIP, key) {
      return CP_PREREQFUNC_OK
    }
    guard let text = primaryIP.map(cString), let ip = IPAddress(text) else {
      refusal = UpstreamError(.blockedAddress, message: "the upstream connection has no address")
      return CP_PREREQFUNC_ABORT
    }
    guard permits(ip) else { return CP_PREREQFUNC_ABORT }
    // Remember plain allows only: a report-mode pass must be recorded on every request.
    if let primaryIP, let key, let verdicts, reportedReason == nil {
      verdicts.remember(primaryIP, key)
    }
    return CP_PREREQFUNC_OK
  }

  /// Applies the SSRF rules and the plain-http credential rule to `ip`; records why not.
  private func permits(_ ip: IPAddress) -> Bool {
    if credentialNeedsLoopback && !ip.isLoopback {
      refusal = UpstreamError(
        .insecureUpstream,
        message: "a credential would cross plain http to \(ip), which is not a loopback address")
      return false
    }
    guard let check = dialCheck, let why = check.refusal(ip) else { return true }
    if check.report {
      reportedReason = why
      return true
    }
    refusal = UpstreamError(.blockedAddress, message: why)
    return false
  }

  // MARK: curl callbacks

  fileprivate func onHeader(_ bytes: UnsafeRawBufferPointer) -> Int {
    guard let delegate else { return 0 }
    if headReceived { return bytes.count }  // trailers: not forwarded
    switch head.take(line: bytes) {
    case .more, .interim:
      return bytes.count
    case .complete:
      headReceived = true
      delegate.upstreamDidReceiveHead(
        status: head.status, headers: head.headers, framing: head.framing)
      return bytes.count
    case .invalid(let why):
      refusal = UpstreamError(.upstreamProtocol, message: why)
      return 0
    }
  }

  fileprivate func onBody(_ bytes: UnsafeRawBufferPointer) -> Int {
    guard let delegate else { return 0 }
    guard headReceived else {
      // Bytes with no final head in front of them would reach the caller unframed.
      refusal = UpstreamError(.upstreamProtocol, message: "upstream sent a body without a head")
      return 0
    }
    if delegate.upstreamDidReceiveBody(bytes) { return bytes.count }
    receivePaused = true
    return CP_WRITEFUNC_PAUSE
  }

  fileprivate func onRead(_ buffer: UnsafeMutableRawBufferPointer) -> Int {
    guard let delegate else { return CP_READFUNC_ABORT }
    switch delegate.upstreamWantsBody(into: buffer) {
    case .bytes(let n): return n
    case .end: return 0
    case .wait:
      sendPaused = true
      return CP_READFUNC_PAUSE
    case .failure: return CP_READFUNC_ABORT
    }
  }
}

private func transfer(_ p: UnsafeMutableRawPointer?) -> UpstreamTransfer {
  Unmanaged<UpstreamTransfer>.fromOpaque(p!).takeUnretainedValue()
}

private func headerCallback(
  _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?
) -> Int {
  transfer(user).onHeader(UnsafeRawBufferPointer(start: data, count: size * count))
}

private func writeCallback(
  _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?
) -> Int {
  transfer(user).onBody(UnsafeRawBufferPointer(start: data, count: size * count))
}

private func readCallback(
  _ data: UnsafeMutablePointer<CChar>?, _ size: Int, _ count: Int, _ user: UnsafeMutableRawPointer?
) -> Int {
  transfer(user).onRead(UnsafeMutableRawBufferPointer(start: data, count: size * count))
}

private func openSocketCallback(
  _ user: UnsafeMutableRawPointer?, _ purpose: curlsocktype,
  _ address: UnsafeMutablePointer<curl_sockaddr>?
) -> curl_socket_t {
  transfer(user).onOpenSocket(address!)
}

private func prereqCallback(
  _ user: UnsafeMutableRawPointer?, _ primaryIP: UnsafeMutablePointer<CChar>?,
  _ localIP: UnsafeMutablePointer<CChar>?, _ primaryPort: Int32, _ localPort: Int32
) -> Int32 {
  transfer(user).onPrerequest(primaryIP: primaryIP)
}

/// Collects the first option libcurl refused (`curl_easy_setopt` returns a code, not a throw).
struct SetoptCheck {
  private(set) var refused: String?

  mutating func callAsFunction(_ name: StaticString, _ code: CURLcode) {
    if code != CURLE_OK && refused == nil {
      refused = "\(name) (\(cString(curl_easy_strerror(code))))"
    }
  }
}
