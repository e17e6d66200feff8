use crisp_image::{Credentials, Reference};
use k8s_cri::v1::{AuthConfig, PullImageRequest, PullImageResponse};
use tonic::Status;

use crate::daemon::Daemon;
use crate::status::ToStatus;

pub async fn pull_image(daemon: &Daemon, request: PullImageRequest) -> Result<PullImageResponse, Status> {
    let image = request.image.map(|i| i.image).unwrap_or_default();
    let reference = Reference::parse(&image).map_err(ToStatus::to_status)?;
    let credentials = credentials(request.auth, &reference)?;
    let record =
        crate::metrics::timed_pull(daemon.puller.pull(reference, credentials)).await.map_err(ToStatus::to_status)?;
    Ok(PullImageResponse { image_ref: record.id.to_string() })
}

/// The kubelet's credentials, in containerd's order of precedence, and only when they are for
/// the image's registry: a `server_address` naming another host gets none of them sent.
fn credentials(auth: Option<AuthConfig>, reference: &Reference) -> Result<Credentials, Status> {
    let Some(auth) = auth else { return Ok(Credentials::Anonymous) };
    if !auth.server_address.is_empty() && server_host(&auth.server_address) != reference.registry() {
        tracing::debug!(server = %auth.server_address, registry = reference.registry(), "credentials for another registry: not used");
        return Ok(Credentials::Anonymous);
    }
    if !auth.username.is_empty() {
        return Ok(Credentials::Basic { username: auth.username, password: auth.password });
    }
    if !auth.auth.is_empty() {
        let decoded = decode_base64(&auth.auth)
            .ok_or_else(|| Status::invalid_argument("PullImage: auth is not base64 of username:password"))?;
        let (username, password) = decoded
            .split_once(':')
            .ok_or_else(|| Status::invalid_argument("PullImage: auth is not base64 of username:password"))?;
        return Ok(Credentials::Basic { username: username.to_owned(), password: password.to_owned() });
    }
    if !auth.registry_token.is_empty() {
        return Ok(Credentials::Bearer(auth.registry_token));
    }
    if !auth.identity_token.is_empty() {
        return Err(Status::invalid_argument(
            "PullImage: identity tokens (OAuth2 refresh tokens) are not supported: use username/password or a registry token",
        ));
    }
    Ok(Credentials::Anonymous)
}

/// `https://index.docker.io/v1/` or `registry.example.com:5000` as a registry host, the way
/// references name it.
fn server_host(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let host = rest.split('/').next().unwrap_or(rest);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        host => host,
    }
}

/// Standard base64 with or without padding, as Docker config files carry it.
fn decode_base64(text: &str) -> Option<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for &c in text.trim_end_matches('=').as_bytes() {
        let value = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_field_is_base64_user_colon_password() {
        let auth = AuthConfig { auth: "dXNlcjpwYXNzOndvcmQ=".into(), ..Default::default() };
        let busybox = Reference::parse("busybox").unwrap();
        assert_eq!(
            credentials(Some(auth), &busybox).unwrap(),
            Credentials::Basic { username: "user".into(), password: "pass:word".into() }
        );
        assert_eq!(decode_base64("YQ").as_deref(), Some("a"));
        assert!(credentials(Some(AuthConfig { auth: "!!".into(), ..Default::default() }), &busybox).is_err());
    }

    #[test]
    fn precedence() {
        let busybox = Reference::parse("busybox").unwrap();
        let both =
            AuthConfig { username: "u".into(), password: "p".into(), registry_token: "t".into(), ..Default::default() };
        assert_eq!(
            credentials(Some(both), &busybox).unwrap(),
            Credentials::Basic { username: "u".into(), password: "p".into() }
        );
        let token = AuthConfig { registry_token: "t".into(), identity_token: "i".into(), ..Default::default() };
        assert_eq!(credentials(Some(token), &busybox).unwrap(), Credentials::Bearer("t".into()));
        assert_eq!(credentials(None, &busybox).unwrap(), Credentials::Anonymous);
        let identity = AuthConfig { identity_token: "x".into(), ..Default::default() };
        assert_eq!(credentials(Some(identity), &busybox).unwrap_err().code(), tonic::Code::InvalidArgument);
    }

    #[test]
    fn credentials_only_for_their_registry() {
        let auth = |server: &str| AuthConfig {
            username: "u".into(),
            password: "p".into(),
            server_address: server.into(),
            ..Default::default()
        };
        let busybox = Reference::parse("busybox").unwrap();
        let basic = Credentials::Basic { username: "u".into(), password: "p".into() };
        assert_eq!(credentials(Some(auth("https://index.docker.io/v1/")), &busybox).unwrap(), basic);
        assert_eq!(credentials(Some(auth("")), &busybox).unwrap(), basic);
        assert_eq!(credentials(Some(auth("quay.io")), &busybox).unwrap(), Credentials::Anonymous);
        let local = Reference::parse("127.0.0.1:5000/app").unwrap();
        assert_eq!(credentials(Some(auth("127.0.0.1:5000")), &local).unwrap(), basic);
    }
}
