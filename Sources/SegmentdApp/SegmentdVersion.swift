/// segmentd's version, in one place: `segmentd --version` prints it and the server reports it
/// in `rpc.hello` (`version`) and `rpc.discover` (`info.version`).
public enum SegmentdVersion {
    public static let current = "0.1.0"
}
