import CCrypto
import CredproxyConfig
import LocalCA

/// Intercepted hosts' TLS contexts, from the local CA's leaf cache (one leaf and context per host,
/// minted on first use with one signature, renewed a day before expiry). Every context requires
/// the caller's SNI to name the CONNECT target before it is shared.
final class LocalCAInterception: InterceptCertificates {
  let cache: LeafCache
  let certPath: String
  let keyPath: String

  private init(ca: LocalCA, certPath: String, keyPath: String) {
    self.certPath = certPath
    self.keyPath = keyPath
    cache = LeafCache(
      ca: ca,
      configure: { ctx in
        _ = cp_ssl_ctx_set_servername_callback(ctx, ClientTransport.sniNamesTarget)
      }
    )
  }

  /// The CA in `certPath`/`keyPath`, read now. `kept` (the running config's) is returned instead,
  /// leaves and all, when the files still hold the same CA: a reload must not re-mint every leaf,
  /// but a CA replaced in place (rotated, a Kubernetes Secret updated) must be used from this
  /// reload on, or clients that trust only the new CA would be served leaves of the old one.
  static func load(certPath: String, keyPath: String, keeping kept: LocalCAInterception?)
    throws(LocalCAError) -> LocalCAInterception
  {
    let ca = try LocalCA.load(certPath: certPath, keyPath: keyPath)
    if let kept, kept.certPath == certPath, kept.keyPath == keyPath,
      kept.cache.ca.certificatePEM == ca.certificatePEM
    {
      return kept
    }
    return LocalCAInterception(ca: ca, certPath: certPath, keyPath: keyPath)
  }

  /// The CA files a config uses for interception: `ca-cert`/`ca-key`, else `credproxy ca init`'s
  /// default place; nil when no route intercepts.
  static func files(for config: ProxyConfig) -> (cert: String, key: String)? {
    config.intercepts ? config.caFiles : nil
  }

  /// The leaf cache in Prometheus text, appended to `/metrics` when a route intercepts.
  var prometheusText: String {
    let s = cache.statistics
    return """
      # HELP credproxy_intercept_leaf_mints_total Leaf certificates minted by the local CA (first use of a host, renewals, after eviction).
      # TYPE credproxy_intercept_leaf_mints_total counter
      credproxy_intercept_leaf_mints_total \(s.minted)
      # HELP credproxy_intercept_leaf_signing_seconds_total Time spent minting leaves (key signing, certificate, TLS context).
      # TYPE credproxy_intercept_leaf_signing_seconds_total counter
      credproxy_intercept_leaf_signing_seconds_total \(Double(s.mintNanoseconds) / 1e9)
      # HELP credproxy_intercept_leaf_cache_hits_total Intercepted CONNECTs served a cached leaf.
      # TYPE credproxy_intercept_leaf_cache_hits_total counter
      credproxy_intercept_leaf_cache_hits_total \(s.hits)
      # HELP credproxy_intercept_leaf_cache_entries Hosts with a cached leaf now.
      # TYPE credproxy_intercept_leaf_cache_entries gauge
      credproxy_intercept_leaf_cache_entries \(s.entries)

      """
  }

  func serverContext(forHost host: String) -> Result<TLSServerContext, InterceptCertificateError> {
    do {
      let shared = try cache.serverContext(forHost: host)
      // TLSServerContext frees what it holds; the cache keeps its own reference.
      SSL_CTX_up_ref(shared.ctx)
      return .success(TLSServerContext(owning: shared.ctx))
    } catch {
      return .failure(InterceptCertificateError(message: error.description))
    }
  }
}
