//! The monitor's wire protocol on `monitor.sock`: newline-delimited JSON, one request per line,
//! one response line per request, in order. A connection may carry any number of requests;
//! the client here uses one connection per request.
//!
//! Requests carry `"op"`, responses `"result"`:
//! ```text
//! {"op":"hello"}                          -> {"result":"hello","protocol":1,"pid":4242}
//! {"op":"create","id":..,"runtime":..,"runtime_root":..,"systemd_cgroup":false,"bundle":..,"exit_file":..}
//!                                         -> {"result":"created","pid":4300}
//! {"op":"shutdown"}                       -> {"result":"shutting_down","running":1}
//! any failure                             -> {"result":"failed","kind":"runtime","message":"..."}
//! ```
//! Extending it: new ops are new `Request` variants (an old monitor answers them with
//! `bad_request`), new request fields are optional with defaults so old clients keep working,
//! and `hello` tells the client which protocol the monitor it reached speaks.

use serde::{Deserialize, Serialize};

use super::CreateRequest;

/// Bumped when a monitor gains ops or fields a client must know it has.
pub(crate) const PROTOCOL: u32 = 1;

/// A request line longer than this is refused: no valid request comes near it.
pub(crate) const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    Hello,
    Create(CreateRequest),
    Shutdown,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub(crate) enum Response {
    Hello {
        protocol: u32,
        pid: u32,
    },
    /// The container's init pid, as the runtime wrote it to its pid file.
    Created {
        pid: u32,
    },
    /// How many containers still run; the monitor exits when none does.
    ShuttingDown {
        running: usize,
    },
    Failed {
        kind: FailureKind,
        message: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    /// The OCI runtime failed or could not be run; the message is its own.
    Runtime,
    /// The request was not understood or not valid (unknown op, id already in use).
    BadRequest,
    /// The monitor was asked to shut down and takes no new containers.
    ShuttingDown,
    /// The monitor itself failed (files under its directory).
    Internal,
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::ContainerId;

    #[test]
    fn requests_and_responses_have_their_documented_shape() {
        let id = ContainerId::random();
        let create = Request::Create(CreateRequest {
            id: id.clone(),
            runtime: "/usr/sbin/runc".into(),
            runtime_root: "/run/r".into(),
            systemd_cgroup: false,
            bundle: "/b".into(),
            exit_file: PathBuf::from("/e"),
        });
        let json = serde_json::to_value(&create).unwrap();
        assert_eq!(json["op"], "create");
        assert_eq!(json["id"], id.as_str());
        assert_eq!(serde_json::from_value::<Request>(json).unwrap(), create);
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"hello"}"#).unwrap(), Request::Hello);
        assert!(serde_json::from_str::<Request>(r#"{"op":"exec"}"#).is_err());

        let failed = Response::Failed { kind: FailureKind::Runtime, message: "no".into() };
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            serde_json::json!({"result": "failed", "kind": "runtime", "message": "no"})
        );
        let created = serde_json::to_string(&Response::Created { pid: 7 }).unwrap();
        assert_eq!(created, r#"{"result":"created","pid":7}"#);
    }
}
