//! The monitor's wire protocol on `monitor.sock`: newline-delimited JSON, one request per line,
//! one response line per request, in order. A connection may carry any number of requests;
//! the client here uses one connection per request.
//!
//! Requests carry `"op"`, responses `"result"`:
//! ```text
//! {"op":"hello"}                          -> {"result":"hello","protocol":1,"pid":4242}
//! {"op":"create","id":..,"runtime":..,"runtime_root":..,"systemd_cgroup":false,"bundle":..,"exit_file":..,
//!  "stdio":{"log_path":..,"tty":false,"stdin":false,"stdin_once":false},  (optional: /dev/null stdio)
//!  "cgroups_path":"/kubepods/pod1/abc"}                                    (optional: no OOM check)
//!                                         -> {"result":"created","pid":4300}
//! {"op":"reopen_log","id":..}             -> {"result":"log_reopened"}
//! {"op":"exec","id":..,"runtime":..,"runtime_root":..,"systemd_cgroup":false,"process":"/x/process.json",
//!  "timeout_ms":5000 (or null),"output_dir":"/x/out","cap_bytes":16777216}
//!                                         -> {"result":"exec","exit_code":0,"timed_out":false,"truncated":false}
//! {"op":"attach","id":..,"stdin":true,"stdout":true,"stderr":false}
//!                                         -> {"result":"attached","tty":false}, then frames
//! {"op":"exec_stream","id":..,"runtime":..,"runtime_root":..,"systemd_cgroup":false,
//!  "process":"/x/process.json","tty":true,"stdin":true}
//!                                         -> {"result":"exec_started"}, then frames
//! {"op":"shutdown"}                       -> {"result":"shutting_down","running":1}
//! any failure                             -> {"result":"failed","kind":"runtime","message":"..."}
//! ```
//! After `attached` and `exec_started` the connection carries [`super::frame`]s, not lines.
//! Protocol 1 had hello, create without `stdio` and `cgroups_path`, and shutdown; protocol 2
//! added those, `reopen_log` and `exec`; protocol 3 `attach` and `exec_stream`.
//! Extending it: new ops are new `Request` variants (an old monitor answers them with
//! `bad_request`), new request fields are optional with defaults so old clients keep working,
//! and `hello` tells the client which protocol the monitor it reached speaks.

use serde::{Deserialize, Serialize};

pub(crate) use super::{AttachRequest, ExecStreamRequest};
use super::{CreateOptions, CreateRequest, ExecRequest, ExecResult};
use crate::ContainerId;

/// Bumped when a monitor gains ops or fields a client must know it has.
pub(crate) const PROTOCOL: u32 = 3;
/// The first protocol with container stdio, OOM checks, `reopen_log` and `exec`. A monitor of
/// protocol 1 ignores the create fields it does not know: it must not be sent them.
pub(crate) const PROTOCOL_CONTAINERS: u32 = 2;
/// The first protocol with `attach` and `exec_stream`.
pub(crate) const PROTOCOL_STREAMS: u32 = 3;

/// A request line longer than this is refused: no valid request comes near it.
pub(crate) const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum Request {
    Hello,
    Create(CreateOp),
    Shutdown,
    ReopenLog { id: ContainerId },
    Exec(ExecRequest),
    Attach(AttachRequest),
    ExecStream(ExecStreamRequest),
}

/// A create request on the wire: protocol 1's fields and the optional ones after them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct CreateOp {
    #[serde(flatten)]
    pub(crate) request: CreateRequest,
    #[serde(flatten)]
    pub(crate) options: CreateOptions,
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
    LogReopened,
    Exec(ExecResult),
    /// Frames follow; `tty`: the container's output is one stream, its terminal's.
    Attached {
        tty: bool,
    },
    /// The runtime runs; frames follow.
    ExecStarted,
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
    /// No container of that id is the monitor's (or it has exited and its output ended).
    NotFound,
    /// The monitor was asked to shut down and takes no new containers.
    ShuttingDown,
    /// The monitor itself failed (files under its directory).
    Internal,
    /// The OCI runtime overran its time and was killed; the message says how long it had.
    Timeout,
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::monitor::ContainerStdio;

    #[test]
    fn requests_and_responses_have_their_documented_shape() {
        let id = ContainerId::random();
        let request = CreateRequest {
            id: id.clone(),
            runtime: "/usr/sbin/runc".into(),
            runtime_root: "/run/r".into(),
            systemd_cgroup: false,
            bundle: "/b".into(),
            exit_file: PathBuf::from("/e"),
            timeout_ms: None,
        };
        let pause = Request::Create(CreateOp { request: request.clone(), options: CreateOptions::default() });
        let json = serde_json::to_value(&pause).unwrap();
        assert_eq!(json["op"], "create");
        assert_eq!(json["id"], id.as_str());
        assert!(
            ["stdio", "cgroups_path", "timeout_ms"].iter().all(|k| json.get(k).is_none()),
            "protocol 1's shape: {json}"
        );
        assert_eq!(serde_json::from_value::<Request>(json).unwrap(), pause);
        assert_eq!(serde_json::from_str::<Request>(r#"{"op":"hello"}"#).unwrap(), Request::Hello);
        assert!(serde_json::from_str::<Request>(r#"{"op":"exec"}"#).is_err());

        let stdio = ContainerStdio { log_path: Some("/l".into()), tty: false, stdin: true, stdin_once: false };
        let options = CreateOptions { stdio: Some(stdio), cgroups_path: Some("/k/p/c".into()) };
        let container = Request::Create(CreateOp { request, options });
        let json = serde_json::to_value(&container).unwrap();
        assert_eq!(
            json["stdio"],
            serde_json::json!({"log_path": "/l", "tty": false, "stdin": true, "stdin_once": false})
        );
        assert_eq!(json["cgroups_path"], "/k/p/c");
        assert_eq!(serde_json::from_value::<Request>(json).unwrap(), container);
        // Fields left out are their defaults.
        let mut sparse = serde_json::to_value(&container).unwrap();
        sparse["stdio"] = serde_json::json!({"tty": true});
        let Request::Create(op) = serde_json::from_value::<Request>(sparse).unwrap() else { panic!() };
        assert_eq!(op.options.stdio, Some(ContainerStdio { tty: true, ..ContainerStdio::default() }));

        let reopen = format!(r#"{{"op":"reopen_log","id":"{id}"}}"#);
        assert_eq!(serde_json::from_str::<Request>(&reopen).unwrap(), Request::ReopenLog { id: id.clone() });
        let exec = serde_json::json!({"op": "exec", "id": id.as_str(), "runtime": "/r", "runtime_root": "/rr",
            "systemd_cgroup": true, "process": "/p.json", "timeout_ms": null, "output_dir": "/o", "cap_bytes": 10});
        let Request::Exec(exec) = serde_json::from_value::<Request>(exec).unwrap() else { panic!() };
        assert_eq!((exec.timeout_ms, exec.cap_bytes, exec.process), (None, 10, PathBuf::from("/p.json")));

        let failed = Response::Failed { kind: FailureKind::NotFound, message: "no".into() };
        assert_eq!(
            serde_json::to_value(&failed).unwrap(),
            serde_json::json!({"result": "failed", "kind": "not_found", "message": "no"})
        );
        let created = serde_json::to_string(&Response::Created { pid: 7 }).unwrap();
        assert_eq!(created, r#"{"result":"created","pid":7}"#);
        let exec = Response::Exec(ExecResult { exit_code: 137, timed_out: true, truncated: false });
        let exec = serde_json::to_string(&exec).unwrap();
        assert_eq!(exec, r#"{"result":"exec","exit_code":137,"timed_out":true,"truncated":false}"#);
        assert_eq!(serde_json::to_string(&Response::LogReopened).unwrap(), r#"{"result":"log_reopened"}"#);

        let attach = format!(r#"{{"op":"attach","id":"{id}","stdin":true,"stdout":true,"stderr":false}}"#);
        let attach = serde_json::from_str::<Request>(&attach).unwrap();
        assert_eq!(attach, Request::Attach(AttachRequest { id: id.clone(), stdin: true, stdout: true, stderr: false }));
        let stream = serde_json::json!({"op": "exec_stream", "id": id.as_str(), "runtime": "/r", "runtime_root": "/rr",
            "systemd_cgroup": false, "process": "/p.json", "tty": true, "stdin": false});
        let Request::ExecStream(stream) = serde_json::from_value::<Request>(stream).unwrap() else { panic!() };
        assert!(stream.tty && !stream.stdin);
        let attached = serde_json::to_string(&Response::Attached { tty: true }).unwrap();
        assert_eq!(attached, r#"{"result":"attached","tty":true}"#);
        assert_eq!(serde_json::to_string(&Response::ExecStarted).unwrap(), r#"{"result":"exec_started"}"#);
    }
}
