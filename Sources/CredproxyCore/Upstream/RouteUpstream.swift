import CCurl
import CredproxyConfig

/// What every request on one route sends upstream the same way, worked out once per config
/// load: curl's `connect-to` list, and the key under which each loop keeps easy handles already
/// configured for the route (CurlMulti), so a request sets only what is its own (URL, headers,
/// method) instead of resetting a handle and setting some thirty options again.
final class RouteUpstream: @unchecked Sendable {
  /// The config load and route index: handles configured under one key are never used for
  /// another (a reload gives every route a new key).
  let key: DialCheck.RouteKey
  let httpVersion: UpstreamHTTPVersion
  let connectTimeoutMs: Int
  /// CURLOPT_CONNECT_TO (`::host:port`); curl keeps the pointer, so it lives as long as this
  /// object, which every transfer on the route holds. Never changed after init (hence Sendable).
  let connectTo: UnsafeMutablePointer<curl_slist>?

  init(route: Route, key: DialCheck.RouteKey, defaultConnectTimeoutMs: Int) {
    self.key = key
    httpVersion = route.upstreamHTTP
    connectTimeoutMs = route.connectTimeoutMs ?? defaultConnectTimeoutMs
    connectTo = route.connectTo.map { curl_slist_append(nil, "::\($0.description)") }
  }

  deinit {
    if let connectTo { curl_slist_free_all(connectTo) }
  }
}
