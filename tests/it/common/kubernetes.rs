//! Kubernetes objects of the guides, read as YAML values.

use serde_norway::Value;

/// The `defaultMode` of the Secret volume among a pod spec's `volumes`, held to what a non-root
/// container in the pod's `fsGroup` needs: group read, nothing for others. A decimal number:
/// YAML parsers disagree about a leading 0 (Kubernetes reads 0440 as octal, YAML 1.2 parsers as
/// decimal or text).
pub fn assert_secret_volume_group_readable(pod_spec: &Value) -> u64 {
    let keys = pod_spec["volumes"]
        .as_sequence()
        .expect("volumes")
        .iter()
        .find(|v| v.get("secret").is_some())
        .expect("a secret volume");
    let mode = keys["secret"]["defaultMode"]
        .as_u64()
        .expect("defaultMode, a decimal number");
    assert_eq!(mode & 0o040, 0o040, "group read");
    assert_eq!(mode & 0o007, 0, "nothing for others");
    mode
}
