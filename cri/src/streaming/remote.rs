//! What exec and attach share across transports: the protocol versions of
//! `k8s.io/apimachinery`'s remote command, the status the error stream carries at the end, and
//! the terminal sizes the resize stream carries.

use serde::Deserialize;

use super::process::{Input, Outcome};

/// The remote command protocol versions (`channel.k8s.io`, `v2.channel.k8s.io`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V1,
    V2,
    V3,
    V4,
    V5,
}

impl Version {
    pub fn name(self) -> &'static str {
        match self {
            Version::V1 => "channel.k8s.io",
            Version::V2 => "v2.channel.k8s.io",
            Version::V3 => "v3.channel.k8s.io",
            Version::V4 => "v4.channel.k8s.io",
            Version::V5 => "v5.channel.k8s.io",
        }
    }

    pub fn from_name(name: &str) -> Option<Version> {
        [Version::V1, Version::V2, Version::V3, Version::V4, Version::V5].into_iter().find(|v| v.name() == name)
    }

    /// v4 on reports the end as a JSON `Status`, exit codes included; before, only a failure's
    /// message is written.
    pub fn json_status(self) -> bool {
        self >= Version::V4
    }

    /// v3 on has a resize stream for a tty.
    pub fn resizes(self) -> bool {
        self >= Version::V3
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Exec,
    Attach,
}

/// The error stream's content at the end: empty for success before v4.
pub fn status(version: Version, command: Command, outcome: &Outcome) -> Vec<u8> {
    let value = match (command, outcome) {
        (Command::Exec, Outcome::Exited(0)) | (Command::Attach, Outcome::Exited(_)) => {
            if !version.json_status() {
                return Vec::new();
            }
            serde_json::json!({"metadata": {}, "status": "Success"})
        }
        (Command::Exec, Outcome::Exited(code)) => {
            let message = format!("command terminated with non-zero exit code: exit status {code}");
            if !version.json_status() {
                return message.into_bytes();
            }
            serde_json::json!({
                "metadata": {}, "status": "Failure", "message": message, "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            })
        }
        (command, Outcome::Failed(error)) => {
            let what = match command {
                Command::Exec => "error executing command in container",
                Command::Attach => "error attaching to container",
            };
            let cause = format!("{what}: {error}");
            let message = format!("Internal error occurred: {cause}");
            if !version.json_status() {
                return message.into_bytes();
            }
            serde_json::json!({
                "metadata": {}, "status": "Failure", "message": message, "reason": "InternalError",
                "details": {"causes": [{"message": cause}]}, "code": 500,
            })
        }
    };
    serde_json::to_vec(&value).expect("a JSON value serializes")
}

/// The resize stream: `{"Width":W,"Height":H}` objects one after another, split anywhere.
#[derive(Default)]
pub struct ResizeParser {
    buf: Vec<u8>,
}

/// A size is a few dozen bytes.
const MAX_PENDING_RESIZE: usize = 4096;

#[derive(Debug, thiserror::Error)]
pub enum ResizeError {
    #[error("not a terminal size: {0}")]
    Json(serde_json::Error),
    #[error("a terminal size longer than {MAX_PENDING_RESIZE} bytes")]
    TooLong,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TerminalSize {
    width: u16,
    height: u16,
}

impl ResizeParser {
    /// The resizes that `data` completes; an object that is not a size, or one that never
    /// ends, ends the stream.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<Input>, ResizeError> {
        self.buf.extend_from_slice(data);
        if self.buf.len() > MAX_PENDING_RESIZE {
            self.buf.clear();
            return Err(ResizeError::TooLong);
        }
        let mut sizes = Vec::new();
        let mut stream = serde_json::Deserializer::from_slice(&self.buf).into_iter::<TerminalSize>();
        loop {
            match stream.next() {
                Some(Ok(size)) => sizes.push(Input::Resize { width: size.width, height: size.height }),
                Some(Err(e)) if e.is_eof() => break,
                Some(Err(e)) => {
                    self.buf.clear();
                    return Err(ResizeError::Json(e));
                }
                None => break,
            }
        }
        let used = stream.byte_offset();
        self.buf.drain(..used);
        Ok(sizes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_what_client_go_decodes() {
        let success = status(Version::V4, Command::Exec, &Outcome::Exited(0));
        assert_eq!(String::from_utf8(success).unwrap(), r#"{"metadata":{},"status":"Success"}"#);
        let failed: serde_json::Value =
            serde_json::from_slice(&status(Version::V5, Command::Exec, &Outcome::Exited(3))).unwrap();
        assert_eq!(failed["status"], "Failure");
        assert_eq!(failed["reason"], "NonZeroExitCode");
        assert_eq!(failed["details"]["causes"][0], serde_json::json!({"reason": "ExitCode", "message": "3"}));
        // An attach ends in success whatever the container's exit code.
        assert_eq!(status(Version::V4, Command::Attach, &Outcome::Exited(3)), success_bytes());
        let internal: serde_json::Value =
            serde_json::from_slice(&status(Version::V4, Command::Attach, &Outcome::Failed("gone".into()))).unwrap();
        assert_eq!((internal["reason"].as_str(), internal["code"].as_i64()), (Some("InternalError"), Some(500)));
        assert!(internal["message"].as_str().unwrap().ends_with("error attaching to container: gone"));
        // Before v4: nothing for success, the message for a failure.
        assert!(status(Version::V2, Command::Exec, &Outcome::Exited(0)).is_empty());
        let text = status(Version::V3, Command::Exec, &Outcome::Exited(2));
        assert_eq!(text, b"command terminated with non-zero exit code: exit status 2");
    }

    fn success_bytes() -> Vec<u8> {
        br#"{"metadata":{},"status":"Success"}"#.to_vec()
    }

    #[test]
    fn resizes_are_read_across_splits() {
        let mut parser = ResizeParser::default();
        assert_eq!(parser.feed(br#"{"Width":80,"Hei"#).unwrap(), []);
        let sizes = parser.feed(b"ght\":24}\n{\"Width\":100,\"Height\":30}\n").unwrap();
        let expected = [Input::Resize { width: 80, height: 24 }, Input::Resize { width: 100, height: 30 }];
        assert_eq!(sizes, expected);
        assert!(parser.feed(b"[1]").is_err());
        assert!(parser.feed(&[b'['; 5000]).is_err(), "an endless value is cut off");
        assert_eq!(parser.feed(br#"{"Width":1,"Height":2}"#).unwrap(), [Input::Resize { width: 1, height: 2 }]);
        assert_eq!(Version::from_name("v4.channel.k8s.io"), Some(Version::V4));
        assert_eq!(Version::from_name("v9.channel.k8s.io"), None);
    }
}
