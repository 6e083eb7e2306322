import CSystem
import CredproxyConfig
import EgressPolicy
import Glibc
import GoogleAuth
import HTTP1
import Synchronization

/// Deciding a request: who is calling, which route, whether limits allow it, which credential.
extension ProxyConnection {
  func begin(_ head: RequestHead) {
    let runtime = context.runtime
    var record = LogContext(head: head, startedMs: EventLoop.nowMs())

    if let session = intercept {
      // Inside an intercepted tunnel: the CONNECT identified the caller, and every request must
      // be for the host it named; the credential comes only from this request's own route.
      record.via = "intercept"
      record.scheme = "https"
      record.client = session.client
      record.clientClaims = session.clientClaims
      guard head.method != "CONNECT", let authority = head.authority, session.binds(authority)
      else {
        record.deny(.misdirected)
        respond(
          ErrorResponse(
            code: .misdirected,
            message:
              "this tunnel is for \(session.isIPv6 ? "[\(session.host)]" : session.host):\(session.port); the request names \(head.authority?.description ?? "no host")"
          ),
          close: head.framing != .none || !head.keepAlive, log: record)
        return
      }
      route(head, record: record, runtime: runtime, authority: authority, port: session.port)
      return
    }

    // Who is calling: Proxy-Authorization (Basic, Bearer, an OIDC token) or the source address.
    // Two of them would make the caller whichever one the reader picks (a front proxy may take
    // the last): neither counts.
    var proxyAuth: HeaderField?
    for field in head.headers where HeaderPolicy.nameIs(field.name, "proxy-authorization") {
      guard proxyAuth == nil else {
        record.deny(.badRequest)
        respond(
          ErrorResponse(
            code: .badRequest, message: "more than one Proxy-Authorization header; expected one"),
          close: true, log: record)
        return
      }
      proxyAuth = field
    }
    admit(
      head, runtime.clients.identify(proxyAuthorization: proxyAuth?.value, peer: peer),
      record: record, runtime: runtime)
  }

  /// Goes on with a request once its caller is identified (or refused).
  func admit(
    _ head: RequestHead, _ identification: Identification, record start: LogContext,
    runtime: ProxyRuntime, mayFetchKeys: Bool = true
  ) {
    var record = start
    let keepOpen = head.framing == .none && head.keepAlive
    switch identification {
    case .rejected(let why):
      record.deny(.proxyAuthRequired)
      respond(
        ErrorResponse(code: .proxyAuthRequired, message: why),
        close: !keepOpen, log: record,
        extraHeaders: [HeaderField(name: "Proxy-Authenticate", value: ClientIdentifier.challenge)])
      return
    case .client(let name):
      record.client = name
    case .anonymous:
      break
    case .verifyToken(let token, let only):
      let loop = context.loop
      let me = LoopBound(self, loop: loop)
      let verdict = context.broker.issuerKeys.verify(
        token, only: only, clients: runtime.clients, context: context, mayFetch: mayFetchKeys
      ) {
        loop.execute { me.value.issuerKeysArrived(token, only: only) }
      }
      switch verdict {
      case .client(let name, let claims):
        record.client = name
        record.clientClaims = claims
      case .rejected(let why):
        admit(head, .rejected(why), record: record, runtime: runtime)
        return
      case .unavailable(let why):
        record.deny(.identityUnavailable)
        respond(
          ErrorResponse(code: .identityUnavailable, message: why), close: !keepOpen, log: record)
        return
      case .waiting:
        enter(.awaitingIdentity(head, record))
        return
      }
    }

    if head.method == "CONNECT" {
      guard screenPlaceholders(head, injecting: nil, record: record, keepOpen: false) != nil
      else { return }
      beginTunnel(head, record: record, runtime: runtime)
      return
    }
    guard let authority = head.authority else {
      record.deny(.badRequest)
      respond(
        ErrorResponse(code: .badRequest, message: "request has no Host"),
        close: true, log: record)
      return
    }
    route(head, record: record, runtime: runtime, authority: authority, port: authority.port)
  }

  /// The issuer's keys were fetched (or the fetch failed): decide with what is cached now.
  func issuerKeysArrived(_ token: String, only: String?) {
    guard case .awaitingIdentity(let head, let record) = state else { return }
    admit(
      head, .verifyToken(token, only: only), record: record, runtime: context.runtime,
      mayFetchKeys: false)
    if !closed {
      process()
      if !closed { updateInterest() }
    }
  }

  /// Routes an identified request to `authority` (`port`: the one to route on, nil for the
  /// scheme's default) and runs the rest of the policy: limits, credential, transfer.
  /// `shared`: the limits store's answer, when this is the second pass after asking it.
  func route(
    _ head: RequestHead, record start: LogContext, runtime: ProxyRuntime, authority: Authority,
    port explicitPort: Int?, shared: SharedVerdict? = nil
  ) {
    var record = start
    let hasBody = head.framing != .none
    let keepOpen = !hasBody && head.keepAlive
    let path = head.pathAndQuery
    let prepared: PreparedRoute
    switch runtime.router.decide(
      method: head.method, host: authority.host, explicitPort: explicitPort, path: path,
      client: record.client)
    {
    case .refuse(let code, let reason, let match):
      record.routeNumber = match?.number
      let mode = match.map { runtime.config.effectiveMode($0.route) } ?? runtime.config.mode
      guard mode == .report else {
        record.deny(code)
        respond(
          ErrorResponse(code: code, message: reason), close: !keepOpen, log: record)
        return
      }
      // Report mode: log what would be denied and let it through (on the matched route, or with
      // no credential at all when nothing matched).
      record.report(code)
      prepared = match.map { runtime.routes[$0.index] } ?? runtime.reportPassthrough
    case .forward(let match):
      record.routeNumber = match.number
      prepared = runtime.routes[match.index]
    }
    let route = prepared.route
    // Placeholder tokens (metadata-server) never leave: replaced by a minted token, or refused.
    guard
      let head = screenPlaceholders(
        head, injecting: prepared.auth, record: record, keepOpen: keepOpen)
    else { return }
    let enforcing = runtime.config.effectiveMode(route) == .enforce
    let routeIndex = record.routeNumber.map { $0 - 1 }

    // limits-store: the fleet's limits, asked once; the answer routes the request again.
    if shared == nil, let routeIndex, let store = context.sharedLimits,
      store.applies(route: route, client: record.client, routeIndex: routeIndex, runtime: runtime)
    {
      awaitSharedLimits(
        store, head, record: start, runtime: runtime, authority: authority, port: explicitPort,
        routeIndex: routeIndex, route: route)
      return
    }
    var local = true
    var slot: ConcurrencySlot? = nil
    var sharedRate: RateDecision? = nil
    var sharedConcurrency: ConcurrencyOutcome? = nil
    switch shared {
    case .allowed(let held):
      (local, slot) = (false, held)
    case .rateLimited(let retryAfter):
      (local, sharedRate) = (false, .limited(retryAfterSeconds: retryAfter))
    case .clientLimit(let n):
      (local, sharedConcurrency) = (false, .clientLimit(n))
    case .routeLimit(let n):
      (local, sharedConcurrency) = (false, .routeLimit(n))
    case .unavailable(let why):
      if context.sharedLimits?.store.failOpen == false && enforcing {
        record.deny(.limitsUnavailable)
        respond(
          ErrorResponse(
            code: .limitsUnavailable,
            message:
              "route \(record.route) is limited fleet-wide and the limits store cannot answer: \(why)"
          ),
          close: !keepOpen, log: record)
        return
      }
    case nil:
      break
    }
    if let routeIndex, let limit = route.rate,
      case .limited(let retryAfter) = sharedRate
        ?? (local
          ? runtime.rateLimiter.take(client: record.client, route: routeIndex, limit: limit)
          : .allowed)
    {
      if enforcing {
        record.deny(.rateLimited)
        respond(
          ErrorResponse(
            code: .rateLimited,
            message: "route \(record.route) allows \(limit) per client; retry in \(retryAfter) s"),
          close: !keepOpen, log: record,
          extraHeaders: [HeaderField(name: "Retry-After", value: String(retryAfter))])
        return
      }
      record.report(.rateLimited)
    }
    if let routeIndex, local || sharedConcurrency != nil {
      switch sharedConcurrency
        ?? runtime.concurrency.tryAcquire(client: record.client, route: routeIndex)
      {
      case .acquired:
        slot = ConcurrencySlot(runtime.concurrency, client: record.client, route: routeIndex)
      case .clientLimit(let n), .routeLimit(let n):
        if enforcing {
          record.deny(.tooManyConcurrent)
          respond(
            ErrorResponse(
              code: .tooManyConcurrent,
              message:
                "\(record.client.map { "client \"\($0)\"" } ?? "this client") already has \(n) requests in flight"
            ),
            close: !keepOpen, log: record)
          return
        }
        record.report(.tooManyConcurrent)
      }
    }

    let maxBody = route.maxBody ?? runtime.config.maxBody
    if case .contentLength(let n) = head.framing, n > maxBody {
      record.deny(.bodyTooLarge)
      respond(
        ErrorResponse(
          code: .bodyTooLarge,
          message: "request body of \(n) bytes exceeds the limit of \(maxBody) bytes"),
        close: true, log: record)
      return
    }
    let port = route.effectivePort(explicitPort: explicitPort)
    let hostForURL = authority.isIPv6 ? "[\(authority.host)]" : authority.host
    record.scheme = route.upstream.rawValue
    let dial = DialCheck(
      policy: runtime.ssrf, route: route,
      routeKey: .init(generation: runtime.generation, index: routeIndex ?? -1),
      host: authority.host, report: !enforcing)
    var forward = Forward(
      head: head, prepared: prepared, log: record,
      origin: "\(route.upstream.rawValue)://\(hostForURL):\(port)",
      pathAndQuery: path.isEmpty ? "/" : path, maxBody: maxBody, runtime: runtime, dial: dial,
      slot: slot)
    switch prepared.auth {
    case .none:
      startTransfer(forward, credential: nil)
    case .header:
      forward.log.credential = route.auth.secret?.description
      startTransfer(forward, credential: nil)
    case .unavailable(let why):
      record.deny(.credentialUnavailable)
      respond(
        ErrorResponse(
          code: .credentialUnavailable,
          message: "route \(record.route) (\(route.name)) has no credential: \(why)"),
        close: !keepOpen, log: record)
    case .minted(let credential, let kind, let header):
      // Tokens go only to HTTPS upstreams, or over plain http on a loopback connection
      // (emulators, tests). An address off this machine is refused before a token is minted;
      // a name is decided on the address it is dialled at (`credentialNeedsLoopback`).
      if case .refused(let dialled) = route.plainHTTPTokenRule(requestHost: authority.host) {
        record.deny(.insecureUpstream)
        respond(
          ErrorResponse(
            code: .insecureUpstream,
            message:
              "route \(record.route) would send a token over plain http to \(dialled), which is not a loopback address"
          ),
          close: !keepOpen, log: record)
        return
      }
      forward.log.credential = credential.name
      let request: TokenRequest
      switch kind {
      case .oauth2(let prepared):
        request = prepared
      case .oidc(let audience):
        request = TokenRequest(
          credential: credential,
          audience: audience.resolve(
            upstream: route.upstream, host: authority.host, port: port, pathAndQuery: path))
      }
      acquireToken(forward, request: request, header: header)
    }
  }

  /// Asks the limits store and waits (state `awaitingLimits`, at most the store's timeout); the
  /// answer runs `route` again with it. A connection that closed or moved on meanwhile drops it
  /// (and the lease it may hold is released with it).
  func awaitSharedLimits(
    _ store: SharedLimits, _ head: RequestHead, record: LogContext, runtime: ProxyRuntime,
    authority: Authority, port: Int?, routeIndex: Int, route: Route
  ) {
    enter(.awaitingLimits)
    store.admit(client: record.client, routeIndex: routeIndex, route: route, runtime: runtime) {
      [weak self] verdict in
      guard let self, case .awaitingLimits = self.state else { return }
      self.enter(.readingHead(startedMs: record.startedMs))
      self.route(
        head, record: record, runtime: runtime, authority: authority, port: port, shared: verdict)
      if !self.closed { self.updateInterest() }
    }
  }
}
