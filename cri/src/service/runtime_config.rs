use crisp_runtime::CgroupManager;
use k8s_cri::v1::{CgroupDriver, LinuxRuntimeConfiguration, RuntimeConfigRequest, RuntimeConfigResponse};

use crate::daemon::Daemon;

pub fn runtime_config(daemon: &Daemon, _: RuntimeConfigRequest) -> RuntimeConfigResponse {
    let driver = match daemon.config.runtime.cgroup_manager {
        CgroupManager::Cgroupfs => CgroupDriver::Cgroupfs,
        CgroupManager::Systemd => CgroupDriver::Systemd,
    };
    RuntimeConfigResponse { linux: Some(LinuxRuntimeConfiguration { cgroup_driver: driver.into() }) }
}
