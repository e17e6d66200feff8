//! CNI specification versions and the choice of the one a network is run with.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A CNI specification version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpecVersion {
    major: u32,
    minor: u32,
    patch: u32,
}

impl SpecVersion {
    /// CHECK and a `prevResult` on DEL came with 0.4.0.
    pub const V0_4_0: SpecVersion = SpecVersion::new(0, 4, 0);
    /// IPs without `version` in results came with 1.0.0.
    pub const V1_0_0: SpecVersion = SpecVersion::new(1, 0, 0);
    /// STATUS and GC came with 1.1.0.
    pub const V1_1_0: SpecVersion = SpecVersion::new(1, 1, 0);

    /// The versions crisp speaks: every result format it parses (0.3.x, 0.4.0, 1.x).
    const SUPPORTED: [SpecVersion; 5] = [
        SpecVersion::new(0, 3, 0),
        SpecVersion::new(0, 3, 1),
        SpecVersion::V0_4_0,
        SpecVersion::V1_0_0,
        SpecVersion::V1_1_0,
    ];

    const fn new(major: u32, minor: u32, patch: u32) -> SpecVersion {
        SpecVersion { major, minor, patch }
    }

    pub fn parse(text: &str) -> Option<SpecVersion> {
        let mut parts = text.split('.').map(|p| {
            let digits = !p.is_empty() && p.len() <= 9 && p.bytes().all(|b| b.is_ascii_digit());
            digits.then(|| p.parse::<u32>().ok()).flatten()
        });
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Some(major)), Some(Some(minor)), Some(Some(patch)), None) => {
                Some(SpecVersion { major, minor, patch })
            }
            _ => None,
        }
    }

    pub fn is_supported(self) -> bool {
        SpecVersion::SUPPORTED.contains(&self)
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl Serialize for SpecVersion {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for SpecVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        SpecVersion::parse(&text).ok_or_else(|| serde::de::Error::custom(format!("invalid CNI version {text:?}")))
    }
}

/// What a plugin answered to VERSION.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct PluginVersions {
    #[serde(rename = "supportedVersions")]
    pub supported: Vec<String>,
}

/// The highest of the network's versions (`cniVersion` and `cniVersions`) that crisp and every
/// plugin of the chain support, or the versions that stood in the way.
pub(crate) fn negotiate<'a>(
    offered: impl IntoIterator<Item = &'a str>,
    plugins: &[(&str, PluginVersions)],
) -> Result<SpecVersion, Incompatible> {
    let mut candidates: Vec<(&str, SpecVersion)> =
        offered.into_iter().filter_map(|t| SpecVersion::parse(t).map(|v| (t, v))).collect();
    candidates.sort_by_key(|&(_, v)| std::cmp::Reverse(v));
    let mut refusals = Vec::new();
    for (text, version) in &candidates {
        if !version.is_supported() {
            refusals.push(format!("{text}: not supported by crisp"));
            continue;
        }
        match plugins.iter().find(|(_, p)| !p.supported.iter().any(|s| s == text)) {
            None => return Ok(*version),
            Some((plugin, p)) => refusals.push(format!("{text}: plugin {plugin} supports only {:?}", p.supported)),
        }
    }
    if candidates.is_empty() {
        refusals.push("no valid version given".into());
    }
    Err(Incompatible(refusals))
}

/// Why no version could be agreed on, one reason per version offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatible(pub Vec<String>);

impl fmt::Display for Incompatible {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(list: &[&str]) -> PluginVersions {
        PluginVersions { supported: list.iter().map(|s| s.to_string()).collect() }
    }

    #[test]
    fn parses_and_orders() {
        assert_eq!(SpecVersion::parse("1.0.0").unwrap().to_string(), "1.0.0");
        assert!(SpecVersion::parse("0.4.0").unwrap() < SpecVersion::parse("1.0.0").unwrap());
        assert!(SpecVersion::parse("0.10.0").unwrap() > SpecVersion::parse("0.4.0").unwrap());
        for bad in ["", "1", "1.0", "1.0.0.0", "1.x.0", "-1.0.0", "1.0.0-rc1", "+1.0.0"] {
            assert_eq!(SpecVersion::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn picks_the_highest_version_all_support() {
        let plugins = [("bridge", versions(&["0.3.1", "0.4.0", "1.0.0"])), ("portmap", versions(&["0.4.0", "1.0.0"]))];
        let got = negotiate(["0.4.0", "1.1.0", "1.0.0", "0.3.1"], &plugins).unwrap();
        assert_eq!(got, SpecVersion::V1_0_0);
    }

    #[test]
    fn names_what_stood_in_the_way() {
        let plugins = [("bridge", versions(&["0.3.1", "0.4.0"]))];
        let err = negotiate(["1.0.0", "0.2.0", "junk"], &plugins).unwrap_err();
        assert_eq!(
            err.0,
            [
                "1.0.0: plugin bridge supports only [\"0.3.1\", \"0.4.0\"]".to_string(),
                "0.2.0: not supported by crisp".to_string()
            ]
        );
        assert_eq!(negotiate(["junk"], &plugins).unwrap_err().0, ["no valid version given"]);
    }
}

/// VERSION answers by plugin binary: a plugin's versions change only with the binary, and
/// asking on every ADD and every Status would run each plugin once more each time.
#[derive(Debug, Default)]
pub(crate) struct VersionCache(std::sync::Mutex<std::collections::HashMap<BinaryIdentity, PluginVersions>>);

/// A binary file as it is now: replaced or rewritten, it is another one.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct BinaryIdentity {
    path: std::path::PathBuf,
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
    asked_with: String,
}

impl BinaryIdentity {
    pub fn of(path: &std::path::Path, asked_with: &str) -> Option<BinaryIdentity> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(path).ok()?;
        Some(BinaryIdentity {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            asked_with: asked_with.to_owned(),
        })
    }
}

impl VersionCache {
    pub fn get(&self, key: &BinaryIdentity) -> Option<PluginVersions> {
        self.0.lock().expect("version cache lock").get(key).cloned()
    }

    pub fn insert(&self, key: BinaryIdentity, versions: PluginVersions) {
        self.0.lock().expect("version cache lock").insert(key, versions);
    }
}
