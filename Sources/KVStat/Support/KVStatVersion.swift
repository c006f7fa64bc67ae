// The kvstat version recorded in every output (stats.json, manifests, state files).

public enum KVStatVersion {
    public static let current = "0.1.0"
}
