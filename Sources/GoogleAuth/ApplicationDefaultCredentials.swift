/// Where Application Default Credentials come from, in order. Pure: the caller reads the files
/// and pings the metadata server.
public enum ApplicationDefaultCredentials {
  public enum Source: Sendable, Equatable {
    /// `GOOGLE_APPLICATION_CREDENTIALS`: when set it is the answer; an unreadable or invalid file
    /// is an error, never a fall-through.
    case explicitFile(String)
    /// gcloud's `application_default_credentials.json`: used when it exists, else continue.
    case wellKnownFile(String)
    /// The metadata server at `baseURL`. `pingRequired` is false when `GCE_METADATA_HOST` is set;
    /// otherwise use it only if `TokenRequests.metadataPing` is answered with `Metadata-Flavor: Google`.
    case metadataServer(baseURL: String, pingRequired: Bool)
  }

  /// The candidates for `environment` (uses `GOOGLE_APPLICATION_CREDENTIALS`, `CLOUDSDK_CONFIG`,
  /// `HOME`, `GCE_METADATA_HOST`).
  public static func searchOrder(environment: [String: String]) -> [Source] {
    if let path = environment["GOOGLE_APPLICATION_CREDENTIALS"], !path.isEmpty {
      return [.explicitFile(path)]
    }
    var sources: [Source] = []
    let fileName = "application_default_credentials.json"
    if let config = environment["CLOUDSDK_CONFIG"], !config.isEmpty {
      sources.append(.wellKnownFile(joined(config, fileName)))
    } else if let home = environment["HOME"], !home.isEmpty {
      sources.append(.wellKnownFile(joined(home, ".config/gcloud/" + fileName)))
    }
    let hostSet = !(environment["GCE_METADATA_HOST"] ?? "").isEmpty
    sources.append(
      .metadataServer(
        baseURL: MetadataServer.baseURL(environment: environment), pingRequired: !hostSet))
    return sources
  }

  private static func joined(_ directory: String, _ name: String) -> String {
    directory.hasSuffix("/") ? directory + name : directory + "/" + name
  }
}
