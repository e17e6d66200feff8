//! An image record as the CRI shows it.

use crisp_image::ImageRecord;
use k8s_cri::v1::{Image, ImageSpec, Int64Value};

/// `USER` as the kubelet wants it: a numeric user (alone or `uid:gid`) as `uid`, a name as
/// `username`.
fn user(image_user: &str) -> (Option<Int64Value>, String) {
    let user = image_user.split_once(':').map_or(image_user, |(user, _group)| user);
    match user.parse::<u32>() {
        Ok(uid) => (Some(Int64Value { value: uid.into() }), String::new()),
        Err(_) => (None, user.to_owned()),
    }
}

pub fn to_cri(record: &ImageRecord, pinned: bool) -> Image {
    let (uid, username) = user(&record.config.user);
    Image {
        id: record.id.to_string(),
        repo_tags: record.repo_tags.clone(),
        repo_digests: record.repo_digests.clone(),
        size: record.size,
        uid,
        username,
        spec: Some(ImageSpec { image: record.id.to_string(), ..Default::default() }),
        pinned,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(user("1002"), (Some(Int64Value { value: 1002 }), String::new()));
        assert_eq!(user("1003:1004"), (Some(Int64Value { value: 1003 }), String::new()));
        assert_eq!(user("www-data"), (None, "www-data".into()));
        assert_eq!(user("www-data:www-data"), (None, "www-data".into()));
        assert_eq!(user(""), (None, String::new()));
        // Past u32 is no uid: a name, which resolving in the image will refuse later.
        assert_eq!(user("4294967296"), (None, "4294967296".into()));
    }
}
