//! Single-use tokens for the URLs Exec, Attach and PortForward return: the request is checked
//! and kept at the RPC, and the client that brings the token gets exactly that, once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crisp_runtime::ContainerId;

/// As the kubelet's streaming server: the URL is used at once or not at all.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// More URLs than this handed out and not used is a client gone wrong.
const MAX_PENDING: usize = 1000;

/// What a streaming URL was issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamRequest {
    Exec { container_id: String, cmd: Vec<String>, stdio: Stdio },
    Attach { container_id: String, stdio: Stdio },
    PortForward { sandbox_id: String, ports: Vec<u16> },
}

/// The streams a remote command asked for; `tty` has no stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stdio {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// Which kind of URL: a token used on another path is not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Exec,
    Attach,
    PortForward,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Exec => "exec",
            Endpoint::Attach => "attach",
            Endpoint::PortForward => "portforward",
        }
    }
}

impl StreamRequest {
    pub fn endpoint(&self) -> Endpoint {
        match self {
            StreamRequest::Exec { .. } => Endpoint::Exec,
            StreamRequest::Attach { .. } => Endpoint::Attach,
            StreamRequest::PortForward { .. } => Endpoint::PortForward,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{MAX_PENDING} streaming URLs are already waiting to be used")]
pub struct TooManyPending;

#[derive(Default)]
pub struct Tokens {
    pending: Mutex<HashMap<String, (StreamRequest, Instant)>>,
}

impl Tokens {
    /// A new token (256 random bits, URL-safe) for `request`.
    pub fn issue(&self, request: StreamRequest) -> Result<String, TooManyPending> {
        let mut pending = self.pending.lock().expect("token lock");
        let now = Instant::now();
        pending.retain(|_, (_, issued)| now.duration_since(*issued) < TOKEN_TTL);
        if pending.len() >= MAX_PENDING {
            return Err(TooManyPending);
        }
        let token = ContainerId::random().to_string();
        pending.insert(token.clone(), (request, now));
        Ok(token)
    }

    /// The request a token was issued for, if it is one, unused, unexpired and for this
    /// endpoint. Used up either way.
    pub fn redeem(&self, endpoint: Endpoint, token: &str) -> Option<StreamRequest> {
        let (request, issued) = self.pending.lock().expect("token lock").remove(token)?;
        (issued.elapsed() < TOKEN_TTL && request.endpoint() == endpoint).then_some(request)
    }

    #[cfg(test)]
    fn age(&self, token: &str, by: Duration) {
        if let Some((_, issued)) = self.pending.lock().unwrap().get_mut(token) {
            *issued -= by;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attach() -> StreamRequest {
        let stdio = Stdio { stdin: true, stdout: true, stderr: false, tty: true };
        StreamRequest::Attach { container_id: "c".into(), stdio }
    }

    #[test]
    fn tokens_are_single_use_per_endpoint_and_expire() {
        let tokens = Tokens::default();
        let token = tokens.issue(attach()).unwrap();
        assert_eq!(token.len(), 64);
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(tokens.redeem(Endpoint::Attach, &token), Some(attach()));
        assert_eq!(tokens.redeem(Endpoint::Attach, &token), None, "used twice");
        let token = tokens.issue(attach()).unwrap();
        assert_eq!(tokens.redeem(Endpoint::Exec, &token), None, "another endpoint's");
        assert_eq!(tokens.redeem(Endpoint::Attach, &token), None, "used up by the wrong endpoint");
        let token = tokens.issue(attach()).unwrap();
        tokens.age(&token, TOKEN_TTL);
        assert_eq!(tokens.redeem(Endpoint::Attach, &token), None, "expired");
        assert_eq!(tokens.redeem(Endpoint::Attach, "nonsense"), None);
    }

    #[test]
    fn too_many_pending_tokens_are_refused_until_some_expire() {
        let tokens = Tokens::default();
        let issued: Vec<String> = (0..MAX_PENDING).map(|_| tokens.issue(attach()).unwrap()).collect();
        assert!(tokens.issue(attach()).is_err());
        tokens.age(&issued[0], TOKEN_TTL);
        assert!(tokens.issue(attach()).is_ok());
    }
}
