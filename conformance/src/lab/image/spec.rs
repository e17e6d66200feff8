use std::collections::BTreeSet;

/// The `PATH` an image's processes start with unless the runtime's caller overrides it.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What an image tells the runtime about the process it runs: the `config` section of the OCI
/// image config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageSpec {
    pub user: Option<String>,
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: Option<String>,
    /// `PORT/PROTOCOL`, e.g. `80/tcp`.
    pub exposed_ports: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self {
            user: None,
            env: vec![DEFAULT_PATH.to_owned()],
            entrypoint: Vec::new(),
            cmd: Vec::new(),
            working_dir: None,
            exposed_ports: BTreeSet::new(),
            volumes: BTreeSet::new(),
        }
    }
}
