//! critest image.go "public image should timeout if requested": a PullImage whose caller's
//! deadline passes ends with DeadlineExceeded. critest's deadline (1 ms) ends the call before
//! the runtime sees it; here the runtime does: the image is on a registry that accepts
//! connections and never answers, so no pull can finish, and the call must still end at its
//! deadline, leave no image behind, and leave the runtime answering.

use std::time::{Duration, Instant};

use k8s_cri::v1::{PullImageRequest, VersionRequest};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::Code;

use super::{absent, list, spec};
use crate::suite::cases::{ensure, rpc_failed};
use crate::suite::{CaseResult, Context};

/// The deadline the pull is sent with: long enough to reach the runtime and its registry.
const DEADLINE: Duration = Duration::from_secs(2);
/// How late after its deadline the call may end: the runtime's answer, or the client's own
/// expiry, has no reason to take longer.
const SLACK: Duration = Duration::from_secs(5);

/// A registry on 127.0.0.1 that accepts every connection and says nothing; dropping it closes
/// them, so that the runtime's abandoned pull fails at once.
struct SilentRegistry {
    port: u16,
    task: JoinHandle<()>,
}

impl SilentRegistry {
    async fn start() -> Result<Self, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("binding a silent registry: {e}"))?;
        let port = listener.local_addr().map_err(|e| format!("the silent registry's address: {e}"))?.port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((connection, _)) = listener.accept().await {
                held.push(connection);
            }
        });
        Ok(Self { port, task })
    }
}

impl Drop for SilentRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub async fn deadline_exceeded(context: &mut Context) -> CaseResult {
    let registry = SilentRegistry::start().await?;
    let reference = format!("127.0.0.1:{}/crisp-conformance/silent:latest", registry.port);
    let mut request =
        tonic::Request::new(PullImageRequest { image: spec(&reference), auth: None, sandbox_config: None });
    request.set_timeout(DEADLINE);

    let started = Instant::now();
    let answer = tokio::time::timeout(DEADLINE + SLACK, context.client.image.pull_image(request)).await;
    let took = started.elapsed();
    let status = match answer {
        Err(_) => return Err(format!("PullImage with a {DEADLINE:?} deadline had not ended after {took:?}").into()),
        Ok(Ok(response)) => {
            let image_ref = response.into_inner().image_ref;
            return Err(
                format!("PullImage of {reference} from a registry that never answers returned {image_ref:?}").into()
            );
        }
        Ok(Err(status)) => status,
    };
    ensure(deadline_passed(&status), || {
        format!("PullImage past its deadline: want DeadlineExceeded, got {}", rpc_failed("PullImage", status.clone()))
    })?;

    absent(context, &reference).await?;
    let listed = list(context).await?;
    let half = listed.iter().find(|image| image.repo_tags.contains(&reference));
    ensure(half.is_none(), || format!("ListImages lists {reference} after its pull timed out: {half:?}"))?;
    drop(registry);
    let version = context.client.runtime.version(VersionRequest { version: "v1".into() }).await;
    version
        .map_err(|s| format!("the runtime stopped answering after a timed-out pull: {}", rpc_failed("Version", s)))?;
    Ok(())
}

/// DeadlineExceeded from the runtime, or the client's own expiry: Go's gRPC reports that as
/// DeadlineExceeded too (critest's check), tonic as Cancelled "Timeout expired".
fn deadline_passed(status: &tonic::Status) -> bool {
    let client_expiry = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
    status.code() == Code::DeadlineExceeded
        || (status.code() == client_expiry.code() && status.message() == client_expiry.message())
}
