//! `crisp-monitor DIR`: the per-pod container monitor that crisp spawns (see
//! `crisp_runtime::monitor`). Not meant to be run by hand.

fn main() -> std::process::ExitCode {
    crisp_runtime::monitor::server_main()
}
