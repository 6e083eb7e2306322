/// What the CLI asks before serving: a libcurl that refuses one of the options that keep
/// credentials where policy says (no redirects, no proxy, http/https only, verification on, the
/// address hooks) must not carry any.
public enum LibcurlCheck {
  /// The first security-relevant option this libcurl refuses, or nil when it takes them all.
  public static func refusedSecurityOption() -> String? {
    UpstreamTransfer.refusedSecurityOption()
  }
}
