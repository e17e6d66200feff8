//! Seccomp for containers: crisp's own RuntimeDefault allowlist, Localhost profile files, or
//! none.
//!
//! RuntimeDefault denies every syscall it does not list with EPERM. Unlike Docker's profile it
//! grants nothing more for capabilities: a container with CAP_SYS_ADMIN still cannot mount,
//! unshare, setns, sethostname, load modules or reboot; those need Unconfined or privileged.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxSeccomp;
use serde_json::{Value, json};

/// A Localhost profile file is at most this big.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

const EPERM: u32 = 1;
const ENOSYS: u32 = 38;

/// Namespace flags `clone` may not carry under RuntimeDefault: CLONE_NEWNS, NEWCGROUP, NEWUTS,
/// NEWIPC, NEWUSER, NEWPID, NEWNET (unshare's effect, through clone).
const CLONE_NAMESPACE_FLAGS: u64 =
    0x0002_0000 | 0x0200_0000 | 0x0400_0000 | 0x0800_0000 | 0x1000_0000 | 0x2000_0000 | 0x4000_0000;

/// `socket` families refused: AF_VSOCK (40) reaches the hypervisor, not the pod's network.
const AF_VSOCK: u64 = 40;

/// `personality` values allowed: PER_LINUX, PER_LINUX32, UNAME26, UNAME26|PER_LINUX32, and
/// the query 0xffffffff.
const PERSONALITIES: [u64; 5] = [0x0, 0x8, 0x20000, 0x20008, 0xffff_ffff];

/// Syscalls every container may make: files, memory, processes and signals, sockets, time,
/// IPC in its own namespace, its own scheduling and credentials. Names a kernel or libseccomp
/// does not know are skipped by the runtime, so 32-bit variants are listed too.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "cachestat",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchmodat2",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_requeue",
    "futex_time64",
    "futex_wait",
    "futex_waitv",
    "futex_wake",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "map_shadow_stack",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_getfd",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "pkey_alloc",
    "pkey_free",
    "pkey_mprotect",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// Syscalls only one architecture has, allowed there.
#[cfg(target_arch = "x86_64")]
const ARCH_ALLOWED: &[&str] = &["arch_prctl", "modify_ldt"];
#[cfg(target_arch = "aarch64")]
const ARCH_ALLOWED: &[&str] =
    &["arm_fadvise64_64", "arm_sync_file_range", "sync_file_range2", "breakpoint", "cacheflush", "set_tls"];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCH_ALLOWED: &[&str] = &[];

/// The native architecture and the compat ones its kernel also runs.
#[cfg(target_arch = "x86_64")]
const ARCHITECTURES: &[&str] = &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"];
#[cfg(target_arch = "aarch64")]
const ARCHITECTURES: &[&str] = &["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"];
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const ARCHITECTURES: &[&str] = &[];

/// Which seccomp profile a container runs under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeccompProfile {
    /// No filter (the CRI's Unconfined, and what Kubernetes sends when none is set).
    Unconfined,
    /// crisp's built-in allowlist.
    RuntimeDefault,
    /// An OCI `linux.seccomp` object in a JSON file on the host.
    Localhost(PathBuf),
}

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp profile {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("seccomp profile {path} is larger than {MAX_PROFILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("seccomp profile {path} is not an OCI seccomp object: {source}")]
    Parse { path: PathBuf, source: serde_json::Error },
}

/// The `linux.seccomp` for a profile; `kernel` is the running kernel's (major, minor).
pub fn seccomp(profile: &SeccompProfile, kernel: (u32, u32)) -> Result<Option<LinuxSeccomp>, SeccompError> {
    match profile {
        SeccompProfile::Unconfined => Ok(None),
        SeccompProfile::RuntimeDefault => Ok(Some(runtime_default(kernel))),
        SeccompProfile::Localhost(path) => localhost(path).map(Some),
    }
}

fn localhost(path: &Path) -> Result<LinuxSeccomp, SeccompError> {
    let read_error = |source| SeccompError::Read { path: path.to_owned(), source };
    let mut bytes = Vec::new();
    File::open(path).map_err(read_error)?.take(MAX_PROFILE_BYTES + 1).read_to_end(&mut bytes).map_err(read_error)?;
    if bytes.len() as u64 > MAX_PROFILE_BYTES {
        return Err(SeccompError::TooLarge { path: path.to_owned() });
    }
    serde_json::from_slice(&bytes).map_err(|source| SeccompError::Parse { path: path.to_owned(), source })
}

fn runtime_default(kernel: (u32, u32)) -> LinuxSeccomp {
    let mut allowed: Vec<&str> = ALLOWED.iter().chain(ARCH_ALLOWED).copied().collect();
    // Before 4.8 a ptraced process could rewrite its syscalls after the filter ran.
    if kernel >= (4, 8) {
        allowed.extend(["ptrace", "kcmp", "process_vm_readv", "process_vm_writev"]);
    }
    let arg = |index: u32, value: u64, op: &str| json!({"index": index, "value": value, "op": op});
    let mut rules = vec![json!({"names": allowed, "action": "SCMP_ACT_ALLOW"})];
    for value in PERSONALITIES {
        rules.push(
            json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [arg(0, value, "SCMP_CMP_EQ")]}),
        );
    }
    rules.push(json!({"names": ["socket"], "action": "SCMP_ACT_ALLOW", "args": [arg(0, AF_VSOCK, "SCMP_CMP_NE")]}));
    // clone's flags may not ask for new namespaces; s390 swaps clone's first two arguments.
    let flags_index = if cfg!(target_arch = "s390x") { 1 } else { 0 };
    rules.push(json!({
        "names": ["clone"],
        "action": "SCMP_ACT_ALLOW",
        "args": [{"index": flags_index, "value": CLONE_NAMESPACE_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
    }));
    // clone3 passes its flags in memory seccomp cannot read: ENOSYS makes libc fall back to clone.
    rules.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": ENOSYS}));
    let value: Value = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": EPERM,
        "architectures": ARCHITECTURES,
        "syscalls": rules,
    });
    serde_json::from_value(value).expect("the built-in seccomp profile is a valid OCI seccomp object")
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::LinuxSeccompAction;
    use std::collections::HashSet;

    fn allowed_unconditionally(profile: &LinuxSeccomp) -> HashSet<String> {
        profile
            .syscalls()
            .as_ref()
            .unwrap()
            .iter()
            .filter(|rule| rule.args().is_none() && rule.action() == LinuxSeccompAction::ScmpActAllow)
            .flat_map(|rule| rule.names().clone())
            .collect()
    }

    #[test]
    fn runtime_default_denies_administration_even_with_capabilities() {
        let profile = seccomp(&SeccompProfile::RuntimeDefault, (6, 1)).unwrap().unwrap();
        let json = serde_json::to_value(&profile).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(json["defaultErrnoRet"], EPERM);
        let allowed = allowed_unconditionally(&profile);
        for denied in [
            "sethostname",
            "setdomainname",
            "mount",
            "umount2",
            "unshare",
            "setns",
            "bpf",
            "perf_event_open",
            "kexec_load",
            "kexec_file_load",
            "init_module",
            "finit_module",
            "delete_module",
            "reboot",
            "swapon",
            "swapoff",
            "pivot_root",
            "chroot",
            "open_by_handle_at",
            "add_key",
            "keyctl",
            "request_key",
            "acct",
            "settimeofday",
            "clock_settime",
            "userfaultfd",
            "io_uring_setup",
            "fsopen",
            "move_mount",
            "quotactl",
        ] {
            assert!(!allowed.contains(denied), "{denied} is allowed");
        }
        for needed in ["read", "execve", "clone3", "openat", "ptrace", "wait4"] {
            let anywhere = json["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["names"].as_array().unwrap().iter().any(|n| n == needed));
            assert!(anywhere, "{needed} has no rule");
        }
        let clone = json["syscalls"].as_array().unwrap().iter().find(|r| r["names"][0] == "clone").unwrap();
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        assert_eq!(clone["args"][0]["value"], CLONE_NAMESPACE_FLAGS);
    }

    #[test]
    fn ptrace_only_on_kernels_that_recheck_after_it() {
        let old = seccomp(&SeccompProfile::RuntimeDefault, (4, 4)).unwrap().unwrap();
        assert!(!allowed_unconditionally(&old).contains("ptrace"));
        let new = seccomp(&SeccompProfile::RuntimeDefault, (4, 8)).unwrap().unwrap();
        assert!(allowed_unconditionally(&new).contains("ptrace"));
    }

    #[test]
    fn unconfined_is_no_filter() {
        assert!(seccomp(&SeccompProfile::Unconfined, (6, 1)).unwrap().is_none());
    }

    #[test]
    fn localhost_profiles_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("block-hostname.json");
        std::fs::write(
            &path,
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["sethostname"],"action":"SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let profile = seccomp(&SeccompProfile::Localhost(path), (6, 1)).unwrap().unwrap();
        assert_eq!(profile.syscalls().as_ref().unwrap()[0].names(), &["sethostname".to_owned()]);

        let missing = seccomp(&SeccompProfile::Localhost(dir.path().join("missing.json")), (6, 1));
        assert!(matches!(missing, Err(SeccompError::Read { .. })));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, r#"{"defaultAction":"SCMP_ACT_NOPE"}"#).unwrap();
        assert!(matches!(seccomp(&SeccompProfile::Localhost(bad), (6, 1)), Err(SeccompError::Parse { .. })));
        let huge = dir.path().join("huge.json");
        std::fs::write(&huge, vec![b' '; MAX_PROFILE_BYTES as usize + 1]).unwrap();
        assert!(matches!(seccomp(&SeccompProfile::Localhost(huge), (6, 1)), Err(SeccompError::TooLarge { .. })));
    }
}
