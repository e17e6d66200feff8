//! critest apparmor_linux.go, "AppArmor": a container asking for a profile the host has not
//! loaded is refused at CreateContainer; one loaded that denies writes makes `touch` fail, one
//! that only audits them lets it succeed; through the older `apparmor_profile` field, the
//! `apparmor` one, and both (the newer wins). Every case needs AppArmor enabled on this host
//! (where it is not, runtimes ignore the fields, as containerd and CRI-O do); loading the two
//! profiles also needs `apparmor_parser`. The profiles stay loaded after the run, as critest's do.

use std::io::Write;
use std::process::Command;

use k8s_cri::v1::{LinuxContainerSecurityContext, SecurityProfile, security_profile::ProfileType};

use super::{busybox, pod, run_to_exit, security, try_create};
use crate::suite::cases::ensure;
use crate::suite::pod_config::fresh_token;
use crate::suite::{CaseResult, Context, Stop};

const ENABLED: &str = "/sys/module/apparmor/parameters/enabled";
/// How the older field, and critest's `localhost_ref`, name a profile loaded on the host.
const LOCALHOST: &str = "localhost/";
const DENY_WRITE: &str = "crisp-conformance-deny-write";
const AUDIT_WRITE: &str = "crisp-conformance-audit-write";

/// Two profiles allowing what `touch` needs, one denying every write and one auditing them.
/// No `#include`: the host's abstractions may differ or be missing.
fn profiles() -> String {
    [(DENY_WRITE, "deny /** w,"), (AUDIT_WRITE, "audit /** w,")]
        .map(|(name, rule)| {
            format!("profile {name} flags=(attach_disconnected) {{\n  file,\n  capability,\n  {rule}\n}}\n")
        })
        .concat()
}

/// Which of the security context's AppArmor fields a case fills in.
#[derive(Clone, Copy)]
enum Field {
    /// Only `apparmor_profile` (`localhost/NAME`), as kubelets before 1.30 send.
    Deprecated,
    /// Only `apparmor` (Localhost, `localhost_ref` as critest sends it).
    New,
    /// `apparmor` with the profile and `apparmor_profile` naming one that is not loaded.
    Both,
}

pub async fn deprecated_unloaded_refused(context: &mut Context) -> CaseResult {
    unloaded_refused(context, Field::Deprecated).await
}
pub async fn deprecated_deny_write(context: &mut Context) -> CaseResult {
    enforced(context, Field::Deprecated, DENY_WRITE).await
}
pub async fn deprecated_audit_write(context: &mut Context) -> CaseResult {
    enforced(context, Field::Deprecated, AUDIT_WRITE).await
}
pub async fn field_unloaded_refused(context: &mut Context) -> CaseResult {
    unloaded_refused(context, Field::New).await
}
pub async fn field_deny_write(context: &mut Context) -> CaseResult {
    enforced(context, Field::New, DENY_WRITE).await
}
pub async fn field_audit_write(context: &mut Context) -> CaseResult {
    enforced(context, Field::New, AUDIT_WRITE).await
}
pub async fn both_unloaded_refused(context: &mut Context) -> CaseResult {
    unloaded_refused(context, Field::Both).await
}
pub async fn both_deny_write(context: &mut Context) -> CaseResult {
    enforced(context, Field::Both, DENY_WRITE).await
}
pub async fn both_audit_write(context: &mut Context) -> CaseResult {
    enforced(context, Field::Both, AUDIT_WRITE).await
}

/// critest "should fail with an unloaded apparmor_profile": CreateContainer refuses a profile
/// the kernel does not have (else the container would run unconfined, or fail only at start).
async fn unloaded_refused(context: &mut Context, field: Field) -> CaseResult {
    need_apparmor()?;
    let absent = format!("crisp-conformance-absent-{}", fresh_token());
    let pod = pod(context, "apparmor").await?;
    let mut config = busybox(context, "apparmor", &["touch", "/tmp/foo"]).await?;
    ask_for(security(&mut config), field, &absent);
    match try_create(context, &pod, &config).await {
        Ok(id) => {
            Err(format!("CreateContainer with AppArmor profile {absent:?}, never loaded, made container {id}").into())
        }
        Err(_) => Ok(()),
    }
}

/// critest "should enforce a apparmor_profile blocking writes", "... a permissive deprecated
/// profile": `touch /tmp/foo` fails under the profile denying writes, succeeds under the one
/// auditing them.
async fn enforced(context: &mut Context, field: Field, profile: &str) -> CaseResult {
    need_apparmor()?;
    load_profiles()?;
    let pod = pod(context, "apparmor").await?;
    let mut config = busybox(context, "apparmor", &["touch", "/tmp/foo"]).await?;
    ask_for(security(&mut config), field, profile);
    let status = run_to_exit(context, &pod, &config).await?;
    let writes = profile == AUDIT_WRITE;
    ensure((status.exit_code == 0) == writes, || {
        format!(
            "`touch /tmp/foo` under AppArmor profile {profile} exited {}, want {}",
            status.exit_code,
            if writes { "0" } else { "non-zero" }
        )
    })?;
    Ok(())
}

#[allow(deprecated)]
fn ask_for(security: &mut LinuxContainerSecurityContext, field: Field, profile: &str) {
    let new = || SecurityProfile {
        profile_type: ProfileType::Localhost.into(),
        localhost_ref: format!("{LOCALHOST}{profile}"),
    };
    match field {
        Field::Deprecated => security.apparmor_profile = format!("{LOCALHOST}{profile}"),
        Field::New => security.apparmor = Some(new()),
        Field::Both => {
            security.apparmor = Some(new());
            security.apparmor_profile = format!("{LOCALHOST}crisp-conformance-absent-{}", fresh_token());
        }
    }
}

/// Skips unless the kernel has AppArmor enabled (critest's check).
fn need_apparmor() -> CaseResult {
    let enabled = std::fs::read_to_string(ENABLED).is_ok_and(|value| value.starts_with('Y'));
    if enabled { Ok(()) } else { Err(Stop::Skip(format!("AppArmor is disabled on this host ({ENABLED} is not Y)"))) }
}

/// Loads (or replaces) the two test profiles with `apparmor_parser`; skips where it is missing.
fn load_profiles() -> CaseResult {
    let mut file = tempfile::NamedTempFile::new().map_err(|e| format!("writing the AppArmor profiles: {e}"))?;
    file.write_all(profiles().as_bytes()).map_err(|e| format!("writing the AppArmor profiles: {e}"))?;
    let output = match Command::new("apparmor_parser").arg("-r").arg("-W").arg(file.path()).output() {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Stop::Skip("apparmor_parser is not installed: the test profiles cannot be loaded".into()));
        }
        Err(e) => return Err(format!("running apparmor_parser: {e}").into()),
    };
    // apparmor_parser can report a failure on stderr alone.
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure(output.status.success() && stderr.trim().is_empty(), || {
        format!("apparmor_parser -r -W could not load the test profiles ({}): {stderr}", output.status)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_name_both() {
        let text = profiles();
        assert!(text.contains(&format!("profile {DENY_WRITE} ")) && text.contains("deny /** w,"), "{text}");
        assert!(text.contains(&format!("profile {AUDIT_WRITE} ")) && text.contains("audit /** w,"), "{text}");
        assert_eq!(text.matches('{').count(), text.matches('}').count());
    }
}
