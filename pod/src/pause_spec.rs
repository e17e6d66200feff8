//! The OCI spec of a pod's pause process: the namespaces the pod's containers will join, and
//! nothing the pause itself does not need.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crisp_runtime::OomScoreAdjPolicy;
use oci_spec::OciSpecError;
use oci_spec::runtime::{
    LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder,
    LinuxNamespaceType, LinuxResources, Spec, UserBuilder,
};

use crate::model::{NamespaceMode, PodResources, SandboxRecord};

/// The kubelet's score for pause processes: the last thing the OOM killer should pick.
const PAUSE_OOM_SCORE_ADJ: i32 = -998;
/// The pause holds namespaces and nothing else, so it runs as nobody.
const PAUSE_UID: u32 = 65535;

/// How the pause's root filesystem is made.
#[derive(Debug, Clone)]
pub struct PauseProcess {
    pub rootfs: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<String>,
}

pub fn pause_spec(record: &SandboxRecord, pause: &PauseProcess, oom: &OomScoreAdjPolicy) -> Result<Spec, OciSpecError> {
    let config = &record.config;
    let mut spec = crisp_runtime::spec::base(&pause.rootfs);
    spec.set_hostname(Some(record.hostname.clone()));

    if let Some(root) = spec.root_mut() {
        root.set_readonly(Some(true));
    }
    if let Some(process) = spec.process_mut() {
        process.set_args(Some(pause.args.clone()));
        process.set_env(Some(pause.env.clone()));
        process.set_cwd("/".into());
        process.set_user(UserBuilder::default().uid(PAUSE_UID).gid(PAUSE_UID).build()?);
        process.set_no_new_privileges(Some(true));
        process.set_oom_score_adj(Some(oom.clamp(PAUSE_OOM_SCORE_ADJ)));
        process.set_capabilities(Some(
            LinuxCapabilitiesBuilder::default()
                .bounding(HashSet::new())
                .effective(HashSet::new())
                .permitted(HashSet::new())
                .inheritable(HashSet::new())
                .ambient(HashSet::new())
                .build()?,
        ));
    }

    // sysfs is one superblock per network namespace, read-only if its first mount was: a
    // privileged pod's pause mounts it writable so that its privileged containers get it so.
    if config.privileged
        && let Some(mounts) = spec.mounts_mut()
    {
        for mount in mounts.iter_mut().filter(|m| m.destination() == Path::new("/sys")) {
            let options = mount.options().clone().unwrap_or_default();
            mount.set_options(Some(options.into_iter().map(|o| if o == "ro" { "rw".into() } else { o }).collect()));
        }
    }
    let modes = config.namespaces;
    let mut namespaces = vec![namespace(LinuxNamespaceType::Mount, None)?];
    if modes.network != NamespaceMode::Node {
        namespaces.push(namespace(LinuxNamespaceType::Network, record.netns.as_deref())?);
        // A pod on the host network keeps the host's name, as the kubelet expects.
        namespaces.push(namespace(LinuxNamespaceType::Uts, None)?);
    }
    if modes.ipc != NamespaceMode::Node {
        namespaces.push(namespace(LinuxNamespaceType::Ipc, None)?);
    }
    if modes.pid != NamespaceMode::Node {
        namespaces.push(namespace(LinuxNamespaceType::Pid, None)?);
    }
    if modes.network == NamespaceMode::Node {
        spec.set_hostname(None);
    }

    if let Some(linux) = spec.linux_mut() {
        linux.set_namespaces(Some(namespaces));
        linux.set_cgroups_path(Some(record.cgroups_path.clone().into()));
        if !config.sysctls.is_empty() {
            linux.set_sysctl(Some(
                config.sysctls.iter().map(|(k, v)| (k.clone(), v.clone())).collect::<HashMap<_, _>>(),
            ));
        }
        // Over whatever device rules the base spec holds, not instead of them.
        let mut limits = linux.resources().clone().unwrap_or_default();
        apply_resources(&mut limits, &config.resources)?;
        linux.set_resources(Some(limits));
    }
    Ok(spec)
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace, OciSpecError> {
    let builder = LinuxNamespaceBuilder::default().typ(typ);
    match path {
        Some(path) => builder.path(path).build(),
        None => builder.build(),
    }
}

fn apply_resources(limits: &mut LinuxResources, r: &PodResources) -> Result<(), OciSpecError> {
    let mut cpu = LinuxCpuBuilder::default();
    if let Some(v) = r.cpu_shares {
        cpu = cpu.shares(v);
    }
    if let Some(v) = r.cpu_quota {
        cpu = cpu.quota(v);
    }
    if let Some(v) = r.cpu_period {
        cpu = cpu.period(v);
    }
    if let Some(v) = &r.cpuset_cpus {
        cpu = cpu.cpus(v.clone());
    }
    if let Some(v) = &r.cpuset_mems {
        cpu = cpu.mems(v.clone());
    }
    let mut memory = LinuxMemoryBuilder::default();
    if let Some(v) = r.memory_limit {
        memory = memory.limit(v);
    }
    limits.set_cpu(Some(cpu.build()?));
    limits.set_memory(Some(memory.build()?));
    Ok(())
}
