/// The paths a client used on one host, as a tree of segments with request counts.
///
/// Memory stays bounded whatever the log holds: segments that look like identifiers (numbers,
/// UUIDs, long hex) are stored as `*` on the way in, a node with more than `maxChildren`
/// distinct children folds them into one `*` child, and segments past `maxDepth` are not kept.
/// For display and for route prefixes the tree is folded further (`collapsed(fanout:)`), so
/// `/storage/v1/b/logs/o`, `/storage/v1/b/data/o`, … read `/storage/v1/b/*/o`.
public final class PathTree: @unchecked Sendable {
  public static let wildcard = "*"
  static let maxChildren = 64
  static let maxDepth = 8

  public private(set) var children: [String: PathTree] = [:]
  /// Requests whose path passes through (or ends at) this node.
  public private(set) var count = 0
  /// Requests whose path ends here.
  public private(set) var ends = 0
  private var folded = false

  public init() {}

  /// Counts one request path (no query).
  public func add(path: String) {
    var node = self
    node.count += 1
    var depth = 0
    for raw in path.split(separator: "/", omittingEmptySubsequences: true) {
      if depth == Self.maxDepth { break }
      depth += 1
      let segment = Self.looksLikeIdentifier(raw) ? Self.wildcard : String(raw)
      node = node.child(segment)
      node.count += 1
    }
    node.ends += 1
  }

  private func child(_ segment: String) -> PathTree {
    let key = folded ? Self.wildcard : segment
    if let c = children[key] { return c }
    if children.count >= Self.maxChildren {
      foldChildren()
      return child(segment)
    }
    let c = PathTree()
    children[key] = c
    return c
  }

  /// Merges every child into one `*` child.
  private func foldChildren() {
    let merged = PathTree()
    for (_, c) in children { merged.merge(c) }
    children = [Self.wildcard: merged]
    folded = true
  }

  private func merge(_ other: PathTree) {
    count += other.count
    ends += other.ends
    for (k, c) in other.children {
      let key = folded ? Self.wildcard : k
      if let mine = children[key] {
        mine.merge(c)
      } else if children.count >= Self.maxChildren {
        foldChildren()
        children[Self.wildcard]!.merge(c)
      } else {
        let copy = PathTree()
        copy.merge(c)
        children[key] = copy
      }
    }
  }

  /// A copy where every node with more than `fanout` children has them folded into `*`.
  public func collapsed(fanout: Int) -> PathTree {
    let copy = PathTree()
    copy.count = count
    copy.ends = ends
    if children.count > fanout {
      let merged = PathTree()
      for (_, c) in children { merged.merge(c) }
      copy.children = [Self.wildcard: merged.collapsed(fanout: fanout)]
    } else {
      for (k, c) in children { copy.children[k] = c.collapsed(fanout: fanout) }
    }
    return copy
  }

  /// The tree as lines: chains of single children joined into one path, each line with the
  /// requests under it; children by count, then name.
  public func lines() -> [(path: String, count: Int, depth: Int)] {
    var out: [(String, Int, Int)] = []
    func walk(_ node: PathTree, prefix: String, depth: Int) {
      for (name, child) in node.sortedChildren {
        var path = prefix + "/" + name
        var c = child
        while c.children.count == 1 && c.ends == 0, let (n, next) = c.sortedChildren.first {
          path += "/" + n
          c = next
        }
        out.append((path, c.count, depth))
        walk(c, prefix: "", depth: depth + 1)
      }
    }
    if ends > 0 { out.append(("/", ends, 0)) }
    walk(self, prefix: "", depth: 0)
    return out
  }

  public var sortedChildren: [(String, PathTree)] {
    children.sorted {
      $0.value.count != $1.value.count ? $0.value.count > $1.value.count : $0.key < $1.key
    }
  }

  /// The full paths of the tree's leaves and of nodes where requests ended, e.g.
  /// `["/storage/v1/b/*/o", "/upload/storage/v1/b/*/o"]`.
  public func endpoints() -> [[String]] {
    var out: [[String]] = []
    func walk(_ node: PathTree, _ segments: [String]) {
      if node.ends > 0 || node.children.isEmpty { out.append(segments) }
      for (name, child) in node.sortedChildren { walk(child, segments + [name]) }
    }
    walk(self, [])
    return out
  }

  /// Numbers, UUIDs, long hex strings and very long segments: values, not names.
  static func looksLikeIdentifier(_ s: Substring) -> Bool {
    let u = s.utf8
    if u.count > 40 { return true }
    if !u.isEmpty && u.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) { return true }
    let hexOrDash = u.allSatisfy {
      ($0 >= 0x30 && $0 <= 0x39) || ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x66) || $0 == 0x2D
    }
    let digits = u.filter { $0 >= 0x30 && $0 <= 0x39 }.count
    return hexOrDash && u.count >= 16 && digits > 0
  }
}
