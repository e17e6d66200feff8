//! The process an exec runs in a container, for ExecSync and streaming exec alike.

use tonic::Status;

/// The command runs as the container's own process does: its user, environment, working
/// directory, capabilities and security settings, from the container's spec.
/// With a tty, `TERM` is set as containerd sets it, unless the container's environment has one.
pub(crate) fn exec_process(
    view: &crisp_runtime::container::ContainerView,
    cmd: Vec<String>,
    tty: bool,
) -> Result<oci_spec::runtime::Process, Status> {
    let bundle = view.record.exit_file.with_file_name("bundle").join("config.json");
    let spec = oci_spec::runtime::Spec::load(&bundle)
        .map_err(|e| Status::internal(format!("exec: reading {}: {e}", bundle.display())))?;
    let mut process = spec.process().clone().ok_or_else(|| Status::internal("exec: the spec has no process"))?;
    process.set_args(Some(cmd));
    process.set_terminal(Some(tty));
    process.set_console_size(None);
    if tty {
        let mut env = process.env().clone().unwrap_or_default();
        if !env.iter().any(|e| e.starts_with("TERM=")) {
            env.push("TERM=xterm".to_owned());
        }
        process.set_env(Some(env));
    }
    Ok(process)
}
