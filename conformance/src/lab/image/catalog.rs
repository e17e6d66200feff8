use std::collections::BTreeMap;
use std::fmt;

use super::Image;
use super::busybox::busybox_layer;
use super::layer::{Layer, LayerBuilder};
use super::spec::ImageSpec;
use crate::lab::error::LabError;

/// In the multi-layer image: added by the second layer and left alone by the third.
pub const MULTI_LAYER_KEPT: &str = "/data/kept.txt";
/// In the multi-layer image: added by the second layer, deleted by the third's whiteout.
pub const MULTI_LAYER_REMOVED: &str = "/data/removed.txt";
/// In the multi-layer image: added by the third layer.
pub const MULTI_LAYER_ADDED: &str = "/data/added.txt";

/// The web server image's page: what `GET /` on its port answers.
pub const WEB_SERVER_INDEX: &str = "crisp lab web server\n";
/// The port the web server image's default command listens on.
pub const WEB_SERVER_PORT: u16 = 80;
/// Where the web server image keeps [`WEB_SERVER_INDEX`].
pub const WEB_SERVER_ROOT: &str = "/www";

/// The images every lab serves, and the repository and tag each is pushed under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabImage {
    /// Under `library/` so that a `docker.io` mirror pointing at the lab serves plain `busybox`.
    Busybox,
    /// Stands in for `registry.k8s.io/pause:3.10` when the lab mirrors that registry.
    Pause,
    /// busybox with `USER 1002`.
    UserUid,
    /// busybox with `USER www-data`.
    UserName,
    /// busybox with `USER 1003:1004`.
    UserUidGid,
    /// busybox plus two layers; the top one whites out a file of the one below. Each of the
    /// `MULTI_LAYER_*` files holds its own path followed by a newline.
    MultiLayer,
    /// busybox plus a layer with `/www/index.html` ([`WEB_SERVER_INDEX`]); its default command is
    /// busybox `httpd -f -p 80 -h /www`, in the foreground. Stands in for critest's nginx.
    WebServer,
}

impl LabImage {
    pub const ALL: [LabImage; 7] = [
        LabImage::Busybox,
        LabImage::Pause,
        LabImage::UserUid,
        LabImage::UserName,
        LabImage::UserUidGid,
        LabImage::MultiLayer,
        LabImage::WebServer,
    ];

    pub fn repository(self) -> &'static str {
        match self {
            LabImage::Busybox => "library/busybox",
            LabImage::Pause => "pause",
            LabImage::UserUid => "crisp/user-uid",
            LabImage::UserName => "crisp/user-name",
            LabImage::UserUidGid => "crisp/user-uid-gid",
            LabImage::MultiLayer => "crisp/multi-layer",
            LabImage::WebServer => "crisp/web-server",
        }
    }

    pub fn tag(self) -> &'static str {
        match self {
            LabImage::Pause => "3.10",
            _ => "latest",
        }
    }

    /// Builds every lab image. The busybox-based ones share one busybox layer, blob for blob.
    pub fn build_all() -> Result<BTreeMap<LabImage, Image>, LabError> {
        let busybox = busybox_layer()?;
        Self::ALL.into_iter().map(|image| Ok((image, image.build(&busybox)?))).collect()
    }

    fn build(self, busybox: &Layer) -> Result<Image, LabError> {
        let shell = ImageSpec { cmd: vec!["sh".to_owned()], ..ImageSpec::default() };
        let as_user = |user: &str| ImageSpec { user: Some(user.to_owned()), ..shell.clone() };
        match self {
            LabImage::Busybox => Image::build(&shell, vec![busybox.clone()]),
            LabImage::Pause => Image::build(
                &ImageSpec { entrypoint: vec!["/pause".to_owned()], ..ImageSpec::default() },
                vec![pause_layer()?],
            ),
            LabImage::UserUid => Image::build(&as_user("1002"), vec![busybox.clone()]),
            LabImage::UserName => Image::build(&as_user("www-data"), vec![busybox.clone()]),
            LabImage::UserUidGid => Image::build(&as_user("1003:1004"), vec![busybox.clone()]),
            LabImage::MultiLayer => {
                let spec = ImageSpec {
                    working_dir: Some("/data".to_owned()),
                    exposed_ports: ["8080/tcp".to_owned()].into(),
                    ..shell.clone()
                };
                Image::build(&spec, multi_layers(busybox)?)
            }
            LabImage::WebServer => {
                let port = WEB_SERVER_PORT.to_string();
                let spec = ImageSpec {
                    cmd: ["httpd", "-f", "-p", &port, "-h", WEB_SERVER_ROOT].map(str::to_owned).to_vec(),
                    exposed_ports: [format!("{port}/tcp")].into(),
                    ..ImageSpec::default()
                };
                let mut site = LayerBuilder::default();
                site.dir(WEB_SERVER_ROOT, 0o755)?.file(
                    &format!("{WEB_SERVER_ROOT}/index.html"),
                    0o644,
                    WEB_SERVER_INDEX.as_bytes(),
                )?;
                Image::build(&spec, vec![busybox.clone(), site.finish()?])
            }
        }
    }
}

impl fmt::Display for LabImage {
    /// `repository:tag`, as pushed.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.repository(), self.tag())
    }
}

fn pause_layer() -> Result<Layer, LabError> {
    let mut layer = LayerBuilder::default();
    layer.file("/pause", 0o755, crisp_pod::pause::BINARY)?;
    layer.finish()
}

fn multi_layers(busybox: &Layer) -> Result<Vec<Layer>, LabError> {
    let contents = |path: &str| format!("{path}\n").into_bytes();

    let mut second = LayerBuilder::default();
    second.dir("/data", 0o755)?.file(MULTI_LAYER_KEPT, 0o644, &contents(MULTI_LAYER_KEPT))?.file(
        MULTI_LAYER_REMOVED,
        0o644,
        &contents(MULTI_LAYER_REMOVED),
    )?;

    let mut third = LayerBuilder::default();
    third.whiteout(MULTI_LAYER_REMOVED)?.file(MULTI_LAYER_ADDED, 0o644, &contents(MULTI_LAYER_ADDED))?;

    Ok(vec![busybox.clone(), second.finish()?, third.finish()?])
}
