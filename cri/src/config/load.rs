//! Reading, validating and merging the configuration files.
//!
//! Every file is checked on its own first, so an unknown key or a wrong type is reported with
//! the file it is in. The files are then merged as TOML tables over the defaults, so a drop-in
//! that sets one key of a table keeps the others (including default runtime handlers).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crisp_image::Reference;
use toml::Table;

use super::Config;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: {message}")]
    Syntax { path: PathBuf, message: String },
    #[error("{path}: key `{key}`: {message}")]
    Key { path: PathBuf, key: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// Loads `path` and its drop-ins. A missing main file means defaults when `required` is false
/// (the default path), and is an error when the operator named the file.
pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
    let mut merged = Table::try_from(Config::default()).expect("the default configuration serializes");
    let mut files = Vec::new();
    match fs::read_to_string(path) {
        Ok(text) => files.push((path.to_owned(), text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound && !required => {}
        Err(source) => return Err(ConfigError::Read { path: path.to_owned(), source }),
    }
    for dropin in dropins(path)? {
        let text = fs::read_to_string(&dropin).map_err(|source| ConfigError::Read { path: dropin.clone(), source })?;
        files.push((dropin, text));
    }
    // The file that chose the default handler, to name it if that handler is nowhere defined.
    let mut handler_chosen_in = None;
    for (file, text) in &files {
        let table = parse_file(file, text)?;
        if table.get("runtime").and_then(|r| r.get("default_handler")).is_some() {
            handler_chosen_in = Some(file);
        }
        merge(&mut merged, table);
    }
    let config: Config =
        merged.try_into().map_err(|e: toml::de::Error| ConfigError::Invalid(e.message().to_owned()))?;
    let runtime = &config.runtime;
    if !runtime.handlers.contains_key(&runtime.default_handler) {
        let message = format!(
            "{:?} is not one of [runtime.handlers]: {}",
            runtime.default_handler,
            runtime.handlers.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        let key = "runtime.default_handler".to_owned();
        return Err(match handler_chosen_in {
            Some(file) => ConfigError::Key { path: file.clone(), key, message },
            None => ConfigError::Invalid(format!("{key}: {message}")),
        });
    }
    Ok(config)
}

/// `crisp.d/*.toml` beside the main file, by name.
fn dropins(path: &Path) -> Result<Vec<PathBuf>, ConfigError> {
    let dir = path.parent().unwrap_or(Path::new(".")).join("crisp.d");
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(ConfigError::Read { path: dir, source }),
    };
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| ConfigError::Read { path: dir.clone(), source })?;
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "toml") {
            files.push(p);
        }
    }
    files.sort();
    Ok(files)
}

/// Parses one file and checks it against the schema on its own.
fn parse_file(path: &Path, text: &str) -> Result<Table, ConfigError> {
    let table: Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })?;
    let checked: Result<Config, _> = serde_path_to_error::deserialize(toml::Value::Table(table.clone()));
    if let Ok(config) = &checked {
        check_values(config).map_err(|(key, message)| ConfigError::Key { path: path.to_owned(), key, message })?;
    }
    if let Err(e) = checked {
        let inner = e.inner().message().to_owned();
        // An unknown key is reported at its own path or at its parent's, depending on the map
        // it is found in: make it the key's own either way.
        let at = e.path().to_string();
        let key = match unknown_field(&inner) {
            Some(field) if at == "." => field.to_owned(),
            Some(field) if at != field && !at.ends_with(&format!(".{field}")) => format!("{at}.{field}"),
            _ => at,
        };
        return Err(ConfigError::Key { path: path.to_owned(), key, message: inner });
    }
    Ok(table)
}

/// serde reports an unknown key at its parent's path; this recovers the key's own name.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// Later values win; tables merge key by key, anything else (arrays too) is replaced whole.
fn merge(base: &mut Table, over: Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

/// Checks of single values, made on each file so that an error names the file holding the
/// value: absolute paths, handler names, registry hosts.
fn check_values(config: &Config) -> Result<(), (String, String)> {
    for (key, path) in [
        ("server.listen", &config.server.listen),
        ("server.root", &config.server.root),
        ("server.state", &config.server.state),
        ("network.conf_dir", &config.network.conf_dir),
    ] {
        if !path.is_absolute() {
            return Err((key.to_owned(), format!("{} is not an absolute path", path.display())));
        }
    }
    config.runtime.handlers().map_err(|e| ("runtime.handlers".to_owned(), e.to_string()))?;
    if !config.pod.pause_image.is_empty() {
        Reference::parse(&config.pod.pause_image).map_err(|e| ("pod.pause_image".to_owned(), e.to_string()))?;
    }
    config.image.validate().map_err(|e| ("image.registries".to_owned(), e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Files(tempfile::TempDir);

    impl Files {
        fn new() -> Files {
            Files(tempfile::tempdir().unwrap())
        }
        fn main(&self) -> PathBuf {
            self.0.path().join("crisp.toml")
        }
        fn write(&self, name: &str, text: &str) -> PathBuf {
            let path = self.0.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, text).unwrap();
            path
        }
        fn load(&self) -> Result<Config, ConfigError> {
            load(&self.main(), true)
        }
    }

    #[test]
    fn missing_default_file_gives_defaults() {
        let files = Files::new();
        assert_eq!(load(&files.main(), false).unwrap(), Config::default());
        let err = load(&files.main(), true).unwrap_err().to_string();
        assert!(err.contains("crisp.toml: cannot read"), "{err}");
    }

    #[test]
    fn dropins_apply_in_name_order_and_merge_tables() {
        let files = Files::new();
        files.write("crisp.toml", "[server]\nlog_level = \"debug\"\nroot = \"/a\"\n");
        files.write("crisp.d/20-b.toml", "[server]\nroot = \"/c\"\n");
        files
            .write("crisp.d/10-a.toml", "[server]\nroot = \"/b\"\n[runtime.handlers.kata]\npath = \"/usr/bin/kata\"\n");
        files.write("crisp.d/30-ignored.conf", "not toml at all");
        let config = files.load().unwrap();
        assert_eq!(config.server.root, PathBuf::from("/c"));
        assert_eq!(config.server.log_level, super::super::LogLevel::Debug);
        assert_eq!(config.server.listen, PathBuf::from("/run/crisp/crisp.sock"));
        // A drop-in adds a handler; the defaults stay.
        assert_eq!(config.runtime.handlers.keys().collect::<Vec<_>>(), ["crun", "kata", "runc"]);
    }

    #[test]
    fn arrays_are_replaced_whole() {
        let files = Files::new();
        files.write(
            "crisp.toml",
            "[[image.registries]]\nhost = \"docker.io\"\n[[image.registries]]\nhost = \"quay.io\"\n",
        );
        files.write(
            "crisp.d/10.toml",
            "[[image.registries]]\nhost = \"registry.k8s.io\"\nmirrors = [\"http://127.0.0.1:5000\"]\n",
        );
        let config = files.load().unwrap();
        assert_eq!(config.image.registries.len(), 1);
        assert_eq!(config.image.registries[0].mirrors, ["http://127.0.0.1:5000"]);
    }

    #[test]
    fn unknown_key_names_file_and_key() {
        let files = Files::new();
        files.write("crisp.toml", "[runtime]\ncgroup_manager = \"cgroupfs\"\n");
        files.write("crisp.d/10-typo.toml", "[runtime.handlers.runc]\npath = \"/usr/sbin/runc\"\nroot_dir = \"/x\"\n");
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("10-typo.toml: key `runtime.handlers.runc.root_dir`"), "{err}");
        assert!(err.contains("unknown field `root_dir`"), "{err}");

        let files = Files::new();
        files.write("crisp.toml", "lisen = \"/x\"\n");
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("crisp.toml: key `lisen`"), "{err}");
    }

    #[test]
    fn wrong_type_names_file_and_key() {
        let files = Files::new();
        files.write("crisp.toml", "[runtime]\nrestrict_oom_score_adj = \"yes\"\n");
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("crisp.toml: key `runtime.restrict_oom_score_adj`"), "{err}");
        assert!(err.contains("expected a boolean"), "{err}");

        files.write("crisp.toml", "[runtime]\ncgroup_manager = \"cgroupv3\"\n");
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("key `runtime.cgroup_manager`") && err.contains("cgroupv3"), "{err}");

        files.write("crisp.toml", "[metrics]\naddress = \"localhost\"\n");
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("key `metrics.address`") && err.contains("\"localhost\""), "{err}");
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let files = Files::new();
        files.write("crisp.toml", "[server]\nlisten = \n");
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("crisp.toml") && err.contains("line 2"), "{err}");
    }

    #[test]
    fn unreadable_dropin_is_an_error() {
        let files = Files::new();
        files.write("crisp.toml", "");
        fs::create_dir_all(files.0.path().join("crisp.d/10-dir.toml")).unwrap();
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("10-dir.toml: cannot read"), "{err}");
    }

    #[test]
    fn cross_field_checks() {
        let files = Files::new();
        files.write("crisp.toml", "");
        files.write("crisp.d/10-kata.toml", "[runtime]\ndefault_handler = \"kata\"\n");
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("10-kata.toml: key `runtime.default_handler`: \"kata\" is not one of"), "{err}");
        // Defined in a later drop-in, it is fine.
        files.write("crisp.d/20-kata.toml", "[runtime.handlers.kata]\npath = \"/usr/bin/kata\"\n");
        assert_eq!(files.load().unwrap().runtime.default_handler, "kata");

        files.write("crisp.d/30-root.toml", "[server]\nroot = \"relative\"\n");
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("30-root.toml: key `server.root`: relative is not an absolute path"), "{err}");

        files.write("crisp.toml", "[pod]\npause_image = \"Pause:3.10\"\n");
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("crisp.toml: key `pod.pause_image`: invalid image reference \"Pause:3.10\""), "{err}");

        files.write("crisp.toml", "[runtime.handlers.Bad]\npath = \"/x\"\n");
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("invalid runtime handler name \"Bad\""), "{err}");
    }

    #[test]
    fn metrics_address_empty_is_off() {
        let files = Files::new();
        files.write("crisp.toml", "[metrics]\naddress = \"\"\n");
        assert_eq!(files.load().unwrap().metrics.address.0, None);
        files.write("crisp.toml", "[metrics]\naddress = \"127.0.0.1:9090\"\n");
        assert_eq!(files.load().unwrap().metrics.address.0, Some("127.0.0.1:9090".parse().unwrap()));
    }

    #[test]
    fn sampling_rate_is_a_share() {
        let files = Files::new();
        files.write("crisp.toml", "[tracing]\nendpoint = \"http://127.0.0.1:4317\"\nsampling_rate = 0.25\n");
        assert_eq!(files.load().unwrap().tracing.sampling_rate, 0.25);
        files.write("crisp.toml", "[tracing]\nsampling_rate = 1.5\n");
        let err = files.load().unwrap_err().to_string();
        assert!(err.contains("key `tracing.sampling_rate`") && err.contains("1.5 is not between 0.0 and 1.0"), "{err}");
    }

    #[test]
    fn effective_config_round_trips_through_toml() {
        let config = Config::default();
        let text = toml::to_string_pretty(&config).unwrap();
        let files = Files::new();
        files.write("crisp.toml", &text);
        assert_eq!(files.load().unwrap(), config);
    }
}
