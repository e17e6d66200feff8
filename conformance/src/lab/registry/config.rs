use std::net::SocketAddr;
use std::path::Path;

/// The registry's `config.yml`. Only what the lab needs is configured: no proxy (pull-through)
/// cache, notifications, redis or reporting, so the registry never opens a connection of its own.
pub(super) fn config_yaml(addr: SocketAddr, storage: &Path, htpasswd: Option<&Path>) -> String {
    let mut yaml = format!(
        "\
version: 0.1
log:
  level: info
  formatter: text
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: {storage}
  delete:
    enabled: true
  maintenance:
    # Uploads live for milliseconds here; purging would only walk the storage in the background.
    uploadpurging:
      enabled: false
http:
  addr: {addr}
  # A fixed secret silences the registry's warning about generating one.
  secret: crisp-lab
",
        storage = quoted(&storage.to_string_lossy()),
        addr = quoted(&addr.to_string()),
    );
    if let Some(htpasswd) = htpasswd {
        yaml.push_str(&format!(
            "\
auth:
  htpasswd:
    realm: crisp-lab
    path: {}
",
            quoted(&htpasswd.to_string_lossy())
        ));
    }
    yaml
}

/// A YAML double-quoted scalar. JSON string escaping is a subset of YAML's, so any path is safe.
fn quoted(value: &str) -> String {
    serde_json::Value::String(value.to_owned()).to_string()
}
