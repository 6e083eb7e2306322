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

  init(certPath: String, keyPath: String) throws(LocalCAError) {
    self.certPath = certPath
    self.keyPath = keyPath
    let ca = try LocalCA.load(certPath: certPath, keyPath: keyPath)
    cache = LeafCache(ca: ca, configure: { ctx in _ = cp_ssl_ctx_require_sni_target(ctx) })
  }

  /// The CA files a config uses for interception: `ca-cert`/`ca-key`, else `credproxy ca init`'s
  /// default place; nil when no route intercepts.
  static func files(for config: ProxyConfig) -> (cert: String, key: String)? {
    guard config.routes.contains(where: { $0.intercept && !$0.deny }) else { return nil }
    return (config.caCert ?? "credproxy-ca/ca.pem", config.caKey ?? "credproxy-ca/ca-key.pem")
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
