//! Who a container runs as: the CRI's run_as_* fields or the image's `USER`, resolved in the
//! container's own `/etc/passwd` and `/etc/group` (read inside its rootfs only).

use std::path::Path;

use super::rootfs::{Rootfs, RootfsError};

/// The identity a container's process gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Every group the process holds: the primary gid, the image's groups listing the user
    /// (policy Merge) and the CRI's supplemental groups; sorted, no duplicates.
    pub additional_gids: Vec<u32>,
}

/// Whom the CRI asks the container to run as; all unset means the image's `USER`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserRequest {
    /// `run_as_user`: an int64 in the CRI, checked into a uid here.
    pub run_as_user: Option<i64>,
    /// `run_as_username`: wins over `run_as_user`; must exist in the image's passwd.
    pub run_as_username: Option<String>,
    /// `run_as_group`: only with a user.
    pub run_as_group: Option<i64>,
    /// `supplemental_groups`, added to every policy's groups.
    pub supplemental_groups: Vec<i64>,
    pub supplemental_groups_policy: SupplementalGroupsPolicy,
}

/// Whether the image's `/etc/group` memberships are added to the process's groups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SupplementalGroupsPolicy {
    /// The image's groups listing the user, plus the CRI's (Kubernetes' default).
    #[default]
    Merge,
    /// Only the primary gid and the CRI's groups.
    Strict,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("run_as_group is set without run_as_user or run_as_username")]
    RunAsGroupWithoutUser,
    #[error("{what} {value} is not a valid id (0 to {MAX_ID})")]
    IdOutOfRange { what: &'static str, value: i64 },
    #[error("invalid user {0:?}: expected uid, name, uid:gid or name:group")]
    InvalidUser(String),
    #[error("user {0:?} is not in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    UnknownGroup(String),
    #[error("the home directory of user {0:?} in the image's /etc/passwd holds control characters")]
    InvalidHome(String),
    #[error(transparent)]
    File(#[from] RootfsError),
}

/// A user or group as written: a number or a name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Id {
    Number(u32),
    Name(String),
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
    home: String,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// The resolved user and the `HOME` its process gets when the environment has none.
pub fn resolve(request: &UserRequest, image_user: &str, rootfs: &Rootfs) -> Result<(ResolvedUser, String), UserError> {
    let (user, group) = requested(request, image_user)?;
    let passwd = read_passwd(rootfs)?;

    // A uid the image does not know runs with gid 0, as Docker and containerd do; a name must
    // be known.
    let (uid, entry) = match &user {
        Id::Number(uid) => (*uid, passwd.iter().find(|e| e.uid == *uid)),
        Id::Name(name) => {
            let entry = passwd.iter().find(|e| e.name == *name).ok_or_else(|| UserError::UnknownUser(name.clone()))?;
            (entry.uid, Some(entry))
        }
    };
    let home = match entry {
        Some(e) if e.home.chars().any(char::is_control) => return Err(UserError::InvalidHome(e.name.clone())),
        Some(e) if !e.home.is_empty() => e.home.clone(),
        _ => "/".to_owned(),
    };

    let groups = read_groups(rootfs)?;
    let gid = match &group {
        None => entry.map_or(0, |e| e.gid),
        Some(Id::Number(gid)) => *gid,
        Some(Id::Name(name)) => {
            groups.iter().find(|g| g.name == *name).ok_or_else(|| UserError::UnknownGroup(name.clone()))?.gid
        }
    };

    let mut additional_gids = vec![gid];
    if request.supplemental_groups_policy == SupplementalGroupsPolicy::Merge
        && let Some(entry) = entry
    {
        additional_gids.extend(groups.iter().filter(|g| g.members.contains(&entry.name)).map(|g| g.gid));
    }
    for &group in &request.supplemental_groups {
        additional_gids.push(checked_id("supplemental group", group)?);
    }
    additional_gids.sort_unstable();
    additional_gids.dedup();
    // Ids from the image's own passwd and group files, held to the same range.
    checked_id("uid", uid.into())?;
    for &gid in &additional_gids {
        checked_id("gid", gid.into())?;
    }
    Ok((ResolvedUser { uid, gid, additional_gids }, home))
}

/// The user and group asked for, CRI fields first, else the image's `USER`.
fn requested(request: &UserRequest, image_user: &str) -> Result<(Id, Option<Id>), UserError> {
    let group = request.run_as_group.map(|g| checked_id("run_as_group", g).map(Id::Number)).transpose()?;
    if let Some(name) = request.run_as_username.as_deref().filter(|n| !n.is_empty()) {
        return Ok((parse_id(name, "user")?, group));
    }
    if let Some(uid) = request.run_as_user {
        return Ok((Id::Number(checked_id("run_as_user", uid)?), group));
    }
    if group.is_some() {
        return Err(UserError::RunAsGroupWithoutUser);
    }
    match image_user.split_once(':') {
        _ if image_user.is_empty() => Ok((Id::Number(0), None)),
        None => Ok((parse_id(image_user, "user")?, None)),
        Some((user, group)) if !user.is_empty() && !group.is_empty() => {
            Ok((parse_id(user, "user")?, Some(parse_id(group, "group")?)))
        }
        Some(_) => Err(UserError::InvalidUser(image_user.to_owned())),
    }
}

/// A uid or gid from the CRI: never wrapped, and never `(uid_t)-1`, which `setresuid` reads
/// as "leave unchanged" (root).
/// The largest id Kubernetes validates and runc (1.1) sets up; past it runc fails the
/// container's start, after crisp made it.
const MAX_ID: u32 = i32::MAX as u32;

fn checked_id(what: &'static str, value: i64) -> Result<u32, UserError> {
    u32::try_from(value).ok().filter(|&id| id <= MAX_ID).ok_or(UserError::IdOutOfRange { what, value })
}

/// A number is an id (refused out of range, never wrapped); anything else a name.
fn parse_id(text: &str, what: &'static str) -> Result<Id, UserError> {
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let value: i64 = text.parse().unwrap_or(i64::MAX);
        return checked_id(what, value).map(Id::Number);
    }
    if text.contains(['\0', '\n']) || text.contains(':') {
        return Err(UserError::InvalidUser(text.to_owned()));
    }
    Ok(Id::Name(text.to_owned()))
}

fn read_passwd(rootfs: &Rootfs) -> Result<Vec<PasswdEntry>, UserError> {
    let Some(contents) = rootfs.read(Path::new("/etc/passwd"))? else { return Ok(Vec::new()) };
    Ok(lines(&contents)
        .filter_map(|fields| {
            // name:password:uid:gid:gecos:home:shell; lines with unparsable ids match nothing.
            let name = fields.first()?;
            let uid = fields.get(2)?.parse().ok()?;
            let gid = fields.get(3)?.parse().ok()?;
            let home = fields.get(5).copied().unwrap_or_default();
            Some(PasswdEntry { name: name.to_string(), uid, gid, home: home.to_owned() })
        })
        .collect())
}

fn read_groups(rootfs: &Rootfs) -> Result<Vec<GroupEntry>, UserError> {
    let Some(contents) = rootfs.read(Path::new("/etc/group"))? else { return Ok(Vec::new()) };
    Ok(lines(&contents)
        .filter_map(|fields| {
            // name:password:gid:member,member
            let name = fields.first()?;
            let gid = fields.get(2)?.parse().ok()?;
            let members = fields.get(3).map_or_else(Vec::new, |m| {
                m.split(',').map(str::trim).filter(|m| !m.is_empty()).map(ToOwned::to_owned).collect()
            });
            Some(GroupEntry { name: name.to_string(), gid, members })
        })
        .collect())
}

/// The `:`-separated fields of each entry line; comments, blank and non-UTF-8 lines skipped.
fn lines(contents: &[u8]) -> impl Iterator<Item = Vec<&str>> {
    contents
        .split(|&b| b == b'\n')
        .filter_map(|line| std::str::from_utf8(line).ok())
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| line.split(':').collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # a comment\n\
        app:x:1000:1000::/home/app:/bin/sh\n\
        nohome:x:1001:1001:::/bin/sh\n\
        big:x:4294967296:0::/big:/bin/sh\n\
        huge:x:3000000000:0::/huge:/bin/sh\n\
        broken line\n";
    const GROUP: &str = "root:x:0:\n\
        app:x:1000:\n\
        staff:x:50:app,other\n\
        video:x:44: other , app \n\
        web:x:3000:\n\
        nohome:x:1001:\n";

    struct Image {
        _dir: tempfile::TempDir,
        rootfs: Rootfs,
    }

    fn image(passwd: Option<&str>, group: Option<&str>) -> Image {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        fs::create_dir_all(root.join("etc")).unwrap();
        if let Some(passwd) = passwd {
            fs::write(root.join("etc/passwd"), passwd).unwrap();
        }
        if let Some(group) = group {
            fs::write(root.join("etc/group"), group).unwrap();
        }
        Image { rootfs: Rootfs::open(&root).unwrap(), _dir: dir }
    }

    fn user(uid: u32, gid: u32, additional_gids: &[u32]) -> ResolvedUser {
        ResolvedUser { uid, gid, additional_gids: additional_gids.to_vec() }
    }

    fn run(image: &Image, request: &UserRequest, image_user: &str) -> Result<(ResolvedUser, String), UserError> {
        resolve(request, image_user, &image.rootfs)
    }

    #[test]
    fn image_user_forms() {
        let image = image(Some(PASSWD), Some(GROUP));
        let none = UserRequest::default();
        assert_eq!(run(&image, &none, "").unwrap(), (user(0, 0, &[0]), "/root".into()));
        assert_eq!(run(&image, &none, "app").unwrap(), (user(1000, 1000, &[44, 50, 1000]), "/home/app".into()));
        assert_eq!(run(&image, &none, "1000").unwrap().0, user(1000, 1000, &[44, 50, 1000]));
        assert_eq!(run(&image, &none, "1000:3000").unwrap().0, user(1000, 3000, &[44, 50, 3000]));
        assert_eq!(run(&image, &none, "app:web").unwrap().0, user(1000, 3000, &[44, 50, 3000]));
        assert_eq!(run(&image, &none, "1000:web").unwrap().0, user(1000, 3000, &[44, 50, 3000]));
        assert_eq!(run(&image, &none, "app:7").unwrap().0, user(1000, 7, &[7, 44, 50]));
        // A uid the image does not know: gid 0, HOME /.
        assert_eq!(run(&image, &none, "4242").unwrap(), (user(4242, 0, &[0]), "/".into()));
        assert_eq!(run(&image, &none, "nohome").unwrap(), (user(1001, 1001, &[1001]), "/".into()));
        assert!(matches!(run(&image, &none, "ghost"), Err(UserError::UnknownUser(_))));
        assert!(matches!(run(&image, &none, "app:ghosts"), Err(UserError::UnknownGroup(_))));
        for bad in ["app:", ":web", "a:b:c"] {
            assert!(matches!(run(&image, &none, bad), Err(UserError::InvalidUser(_))), "{bad}");
        }
    }

    #[test]
    fn ids_are_never_wrapped() {
        let image = image(Some(PASSWD), Some(GROUP));
        let none = UserRequest::default();
        // 2^32 in passwd matches nothing; as USER it is refused, not uid 0.
        assert!(matches!(run(&image, &none, "4294967296"), Err(UserError::IdOutOfRange { .. })));
        assert!(matches!(run(&image, &none, "4294967295"), Err(UserError::IdOutOfRange { .. })));
        assert!(matches!(run(&image, &none, "99999999999999999999999"), Err(UserError::IdOutOfRange { .. })));
        assert!(matches!(run(&image, &none, "big"), Err(UserError::UnknownUser(_))));
        assert!(matches!(run(&image, &none, "huge"), Err(UserError::IdOutOfRange { .. })), "from the image's passwd");
        for uid in [-1, 1 << 32, i64::MAX, u32::MAX as i64] {
            let request = UserRequest { run_as_user: Some(uid), ..Default::default() };
            assert!(matches!(run(&image, &request, ""), Err(UserError::IdOutOfRange { .. })), "{uid}");
        }
        let request = UserRequest { run_as_user: Some(1), run_as_group: Some(-5), ..Default::default() };
        assert!(matches!(run(&image, &request, ""), Err(UserError::IdOutOfRange { .. })));
        let request = UserRequest { run_as_user: Some(1), supplemental_groups: vec![1 << 40], ..Default::default() };
        assert!(matches!(run(&image, &request, ""), Err(UserError::IdOutOfRange { .. })));
        for uid in [1 << 31, 4294967294] {
            let request = UserRequest { run_as_user: Some(uid), ..Default::default() };
            assert!(matches!(run(&image, &request, ""), Err(UserError::IdOutOfRange { .. })), "{uid}");
        }
        let request = UserRequest { run_as_user: Some(2147483647), ..Default::default() };
        assert_eq!(run(&image, &request, "").unwrap().0.uid, 2147483647);
    }

    #[test]
    fn cri_fields_win_over_the_image() {
        let image = image(Some(PASSWD), Some(GROUP));
        let by_uid = UserRequest { run_as_user: Some(1000), ..Default::default() };
        assert_eq!(run(&image, &by_uid, "root").unwrap(), (user(1000, 1000, &[44, 50, 1000]), "/home/app".into()));
        let by_name = UserRequest { run_as_username: Some("app".into()), run_as_user: Some(0), ..Default::default() };
        assert_eq!(run(&image, &by_name, "").unwrap().0.uid, 1000);
        let with_group = UserRequest { run_as_user: Some(1000), run_as_group: Some(3000), ..Default::default() };
        assert_eq!(run(&image, &with_group, "").unwrap().0, user(1000, 3000, &[44, 50, 3000]));
        let group_only = UserRequest { run_as_group: Some(3000), ..Default::default() };
        assert!(matches!(run(&image, &group_only, "app"), Err(UserError::RunAsGroupWithoutUser)));
        let unknown_name = UserRequest { run_as_username: Some("ghost".into()), ..Default::default() };
        assert!(matches!(run(&image, &unknown_name, ""), Err(UserError::UnknownUser(_))));
    }

    #[test]
    fn supplemental_groups_policies() {
        // critest's case: uid 1000 in group 50 by /etc/group, supplemental 1234.
        let image = image(Some(PASSWD), Some(GROUP));
        let merge = UserRequest { run_as_user: Some(1000), supplemental_groups: vec![1234, 50], ..Default::default() };
        assert_eq!(run(&image, &merge, "").unwrap().0.additional_gids, [44, 50, 1000, 1234]);
        let strict = UserRequest { supplemental_groups_policy: SupplementalGroupsPolicy::Strict, ..merge.clone() };
        assert_eq!(run(&image, &strict, "").unwrap().0.additional_gids, [50, 1000, 1234]);
    }

    #[test]
    fn images_without_user_files() {
        let image = image(None, None);
        let none = UserRequest::default();
        assert_eq!(run(&image, &none, "").unwrap(), (user(0, 0, &[0]), "/".into()));
        assert_eq!(run(&image, &none, "123:456").unwrap().0, user(123, 456, &[456]));
        assert!(matches!(run(&image, &none, "app"), Err(UserError::UnknownUser(_))));
    }

    #[test]
    fn home_with_control_characters_is_refused() {
        let image = image(Some("app:x:1000:1000::/home/app\r\u{1b}x:/bin/sh\n"), None);
        assert!(matches!(run(&image, &UserRequest::default(), "app"), Err(UserError::InvalidHome(_))));
    }

    #[test]
    fn passwd_symlinked_out_of_the_rootfs_is_not_read() {
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("passwd"), "evil:x:0:0::/:/bin/sh\n").unwrap();
        let image = image(None, Some(GROUP));
        let root = image._dir.path().join("rootfs");
        symlink(outside.path().join("passwd"), root.join("etc/passwd")).unwrap();
        assert!(matches!(run(&image, &UserRequest::default(), "evil"), Err(UserError::UnknownUser(_))));
    }

    #[test]
    fn huge_user_files_are_refused() {
        let image = image(None, None);
        let root = image._dir.path().join("rootfs");
        let mut passwd = String::from("app:x:1000:1000::/home/app:/bin/sh\n");
        while passwd.len() <= super::super::rootfs::MAX_FILE_BYTES as usize {
            passwd.push_str("# padding padding padding padding padding padding padding padding\n");
        }
        fs::write(root.join("etc/passwd"), passwd).unwrap();
        assert!(matches!(
            run(&image, &UserRequest::default(), "app"),
            Err(UserError::File(RootfsError::TooLarge { .. }))
        ));
    }
}
