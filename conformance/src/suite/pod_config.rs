//! Pod sandbox configs as the kubelet sends them, with metadata no runtime has seen before, and
//! the filters that find them again. Shared by the pod cases and the RunPodSandbox benchmark.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::{
    CgroupDriver, LinuxPodSandboxConfig, LinuxSandboxSecurityContext, NamespaceMode, NamespaceOption, PodSandboxConfig,
    PodSandboxFilter, PodSandboxMetadata, PodSandboxState, PodSandboxStateValue, RuntimeConfigRequest,
};
use tonic::transport::Channel;

/// The label every pod of one suite or benchmark run carries, valued with that run's token: what
/// its cleanup looks for, so that it never touches pods that others made.
pub(crate) const RUN_LABEL: &str = "crisp-conformance/run";
/// The label that tells one pod of a run from the others, valued with the pod's own token.
pub(crate) const POD_LABEL: &str = "crisp-conformance/pod";

/// The kubelet's own labels on every pod sandbox (k8s.io/kubelet/pkg/types).
const KUBE_POD_NAME: &str = "io.kubernetes.pod.name";
const KUBE_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
const KUBE_POD_UID: &str = "io.kubernetes.pod.uid";

/// The kubelet's attempt counter starts at 0; critest uses 2 (framework.DefaultAttempt). Any
/// value will do as long as the runtime hands it back unchanged.
const ATTEMPT: u32 = 2;

/// A token no earlier call made on this host: the process, the wall clock and a counter. Hex,
/// so that it fits in names, labels and hostnames.
pub(crate) fn fresh_token() -> String {
    let (pid, nanos, count) = fresh_parts();
    format!("{pid:x}-{nanos:x}-{count:x}")
}

/// A fresh UUID-shaped string (8-4-4-4-12 hex digits), as the kubelet's pod UIDs and critest's
/// ids of absent objects are; unique as [`fresh_token`] is, not random.
pub(crate) fn fresh_uid() -> String {
    let (pid, nanos, count) = fresh_parts();
    let bits = (u128::from(pid) << 96) | (u128::from(nanos) << 32) | u128::from(count);
    let hex = format!("{bits:032x}");
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn fresh_parts() -> (u32, u64, u32) {
    static COUNT: AtomicU32 = AtomicU32::new(0);
    // A clock before 1970 only makes the counter and pid carry the uniqueness.
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or_default();
    (std::process::id(), nanos, COUNT.fetch_add(1, Ordering::Relaxed))
}

/// What a pod is for and which run it belongs to; [`PodSpec::config`] makes its config.
#[derive(Debug, Clone)]
pub(crate) struct PodSpec {
    /// The pod's own token: its name, namespace and UID derive from it.
    pub token: String,
    pub name: String,
    pub namespace: String,
    pub uid: String,
    run: String,
}

impl PodSpec {
    /// A pod of run `run` (a [`fresh_token`]) named after `purpose`, with metadata of its own.
    pub(crate) fn new(purpose: &str, run: &str) -> Self {
        let token = fresh_token();
        Self {
            name: format!("crisp-conformance-{purpose}-{token}"),
            namespace: format!("crisp-conformance-{token}"),
            uid: fresh_uid(),
            run: run.to_owned(),
            token,
        }
    }

    /// The config the kubelet would send for a plain pod: its metadata, the kubelet's labels
    /// and the run's and pod's own, and the kubelet's default namespaces (network and IPC of
    /// the pod, PID per container). `cgroup_parent` comes from [`cgroup_parent`].
    pub(crate) fn config(&self, cgroup_parent: &str) -> PodSandboxConfig {
        let labels = [
            (KUBE_POD_NAME, self.name.as_str()),
            (KUBE_POD_NAMESPACE, self.namespace.as_str()),
            (KUBE_POD_UID, self.uid.as_str()),
            (RUN_LABEL, self.run.as_str()),
            (POD_LABEL, self.token.as_str()),
        ];
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: self.name.clone(),
                uid: self.uid.clone(),
                namespace: self.namespace.clone(),
                attempt: ATTEMPT,
            }),
            labels: selector(&labels),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: cgroup_parent.to_owned(),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(NamespaceOption {
                        network: NamespaceMode::Pod.into(),
                        pid: NamespaceMode::Container.into(),
                        ipc: NamespaceMode::Pod.into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    /// A selector matching this pod only.
    pub(crate) fn selector(&self) -> HashMap<String, String> {
        selector(&[(RUN_LABEL, &self.run), (POD_LABEL, &self.token)])
    }
}

/// Makes `config`'s pod share the host's network namespace (hostNetwork: true).
pub(crate) fn use_host_network(config: &mut PodSandboxConfig) {
    let options = config
        .linux
        .get_or_insert_with(Default::default)
        .security_context
        .get_or_insert_with(Default::default)
        .namespace_options
        .get_or_insert_with(Default::default);
    options.network = NamespaceMode::Node.into();
}

/// A label map from pairs.
pub(crate) fn selector(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// A ListPodSandbox filter; empty parts filter nothing.
pub(crate) fn filter(id: &str, state: Option<PodSandboxState>, labels: HashMap<String, String>) -> PodSandboxFilter {
    PodSandboxFilter {
        id: id.to_owned(),
        state: state.map(|s| PodSandboxStateValue { state: s.into() }),
        label_selector: labels,
    }
}

/// The cgroup parent critest gives pods (pkg/common/pod_config.go, GetCgroupParent): none with
/// the cgroupfs driver, `/test.slice` with systemd's or when the runtime does not say.
pub(crate) async fn cgroup_parent(runtime: &mut RuntimeServiceClient<Channel>) -> String {
    const SYSTEMD_SLICE: &str = "/test.slice";
    let driver = runtime.runtime_config(RuntimeConfigRequest {}).await.ok().and_then(|r| r.into_inner().linux);
    match driver.map(|linux| linux.cgroup_driver()) {
        Some(CgroupDriver::Cgroupfs) => String::new(),
        _ => SYSTEMD_SLICE.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_uids_are_fresh() {
        let (a, b) = (fresh_token(), fresh_token());
        assert_ne!(a, b);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'), "{a}");
        let uid = fresh_uid();
        let groups: Vec<_> = uid.split('-').map(str::len).collect();
        assert_eq!(groups, [8, 4, 4, 4, 12], "{uid}");
        assert!(uid.bytes().all(|c| c.is_ascii_hexdigit() || c == b'-'), "{uid}");
        assert_ne!(uid, fresh_uid());
    }

    #[test]
    fn config_carries_metadata_labels_and_default_namespaces() {
        let spec = PodSpec::new("basic", "run1");
        assert!(spec.name.starts_with("crisp-conformance-basic-"), "{}", spec.name);
        assert_ne!(spec.name, PodSpec::new("basic", "run1").name);
        let config = spec.config("");
        let metadata = config.metadata.as_ref().unwrap();
        assert_eq!((metadata.name.as_str(), metadata.uid.as_str()), (spec.name.as_str(), spec.uid.as_str()));
        assert_eq!(metadata.namespace, spec.namespace);
        assert_eq!(metadata.attempt, ATTEMPT);
        assert_eq!(config.labels[RUN_LABEL], "run1");
        assert_eq!(config.labels[POD_LABEL], spec.token);
        assert_eq!(config.labels[KUBE_POD_UID], spec.uid);
        let linux = config.linux.as_ref().unwrap();
        assert_eq!(linux.cgroup_parent, "");
        let options = linux.security_context.as_ref().unwrap().namespace_options.as_ref().unwrap();
        assert_eq!(
            (options.network(), options.pid(), options.ipc()),
            (NamespaceMode::Pod, NamespaceMode::Container, NamespaceMode::Pod)
        );
        // The pod's selector is a subset of its labels.
        assert!(spec.selector().iter().all(|(k, v)| config.labels.get(k) == Some(v)));
    }

    #[test]
    fn host_network_changes_only_the_network_namespace() {
        let mut config = PodSpec::new("host", "run1").config("/test.slice");
        use_host_network(&mut config);
        let linux = config.linux.as_ref().unwrap();
        let options = linux.security_context.as_ref().unwrap().namespace_options.as_ref().unwrap();
        assert_eq!((options.network(), options.pid()), (NamespaceMode::Node, NamespaceMode::Container));
        assert_eq!(linux.cgroup_parent, "/test.slice");

        let mut bare = PodSandboxConfig::default();
        use_host_network(&mut bare);
        let options = bare.linux.unwrap().security_context.unwrap().namespace_options.unwrap();
        assert_eq!(options.network(), NamespaceMode::Node);
    }

    #[test]
    fn filters() {
        let none = filter("", None, HashMap::new());
        assert_eq!(none, PodSandboxFilter::default());
        let labels = selector(&[("a", "1"), ("b", "2")]);
        let all = filter("abc", Some(PodSandboxState::SandboxNotready), labels.clone());
        assert_eq!(all.id, "abc");
        assert_eq!(all.state.unwrap().state(), PodSandboxState::SandboxNotready);
        assert_eq!(all.label_selector, labels);
        assert_eq!(labels.len(), 2);
        assert_eq!(labels["b"], "2");
    }
}
