//! What a case runs with: the runtime's client, the test images, and the lab images the running
//! case pulled, the containers and pods it made, what it changed on the host and the host
//! directories it wrote, which the runner removes or undoes after it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use k8s_cri::v1::{
    ImageSpec, ImageStatusRequest, ListContainersRequest, ListImagesRequest, ListPodSandboxRequest, PullImageRequest,
    RemoveContainerRequest, RemoveImageRequest, RemovePodSandboxRequest, StopContainerRequest, StopPodSandboxRequest,
};

use super::cases::rpc_failed;
use super::pod_config::{RUN_LABEL, fresh_token};
use super::test_images::is_image_id;
use super::{CaseResult, Stop, TestImages};
use crate::client::CriClient;
use crate::lab::image::LabImage;

pub struct Context {
    pub client: CriClient,
    pub images: TestImages,
    pulled: BTreeSet<LabImage>,
    /// This run's token, which every pod a case makes carries as its [`RUN_LABEL`].
    run: String,
    /// Pods the running case made, by the id RunPodSandbox returned.
    pods: BTreeSet<String>,
    /// Containers the running case made, by the id CreateContainer returned.
    containers: BTreeSet<String>,
    /// Host directories the running case made (log directories, volumes, seccomp profiles),
    /// removed once its containers and pods are gone.
    scratch: Vec<tempfile::TempDir>,
    /// What undoes the running case's changes to the host (mounts, IPC objects), in the order
    /// they were made.
    host_changes: Vec<HostUndo>,
}

type HostUndo = Box<dyn FnOnce() -> Result<(), String> + Send>;

/// Time the runner gives a case's images, or its pods, to go after it.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

impl Context {
    pub fn new(client: CriClient, images: TestImages) -> Self {
        Self {
            client,
            images,
            pulled: BTreeSet::new(),
            run: fresh_token(),
            pods: BTreeSet::new(),
            containers: BTreeSet::new(),
            scratch: Vec::new(),
            host_changes: Vec::new(),
        }
    }

    /// The value of [`RUN_LABEL`] on the pods of this run.
    pub(crate) fn run(&self) -> &str {
        &self.run
    }

    /// Makes pod `id` the running case's, to be removed after it.
    pub(crate) fn made_pod(&mut self, id: String) {
        self.pods.insert(id);
    }

    /// Makes container `id` the running case's, to be removed after it.
    pub(crate) fn made_container(&mut self, id: String) {
        self.containers.insert(id);
    }

    /// A new empty host directory for the running case, removed after its pods.
    pub(crate) fn scratch_dir(&mut self, purpose: &str) -> Result<PathBuf, String> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("crisp-conformance-{purpose}-"))
            .tempdir()
            .map_err(|e| format!("creating a temporary directory for {purpose}: {e}"))?;
        let path = dir.path().to_owned();
        self.scratch.push(dir);
        Ok(path)
    }

    /// Makes `undo` run after the running case, once its containers and pods are gone and before
    /// its directories are removed: the case calls this as soon as it has changed the host, so
    /// that the change is undone whether the case passes, fails or times out. The latest change
    /// is undone first.
    pub(crate) fn on_host_cleanup(&mut self, undo: impl FnOnce() -> Result<(), String> + Send + 'static) {
        self.host_changes.push(Box::new(undo));
    }

    /// Removes what the case left: its containers, its pods, its changes to the host, then its
    /// images and directories.
    pub(crate) async fn clean_up(&mut self) -> Result<(), String> {
        let containers = self.remove_containers().await;
        let pods = self.remove_pods().await;
        let host = self.undo_host_changes();
        let images = self.remove_pulled().await;
        // A directory whose removal fails (a mount a runtime left in it) stays behind: the
        // failures above say why.
        self.scratch.clear();
        let failures: Vec<String> = [containers, pods, host, images].into_iter().filter_map(Result::err).collect();
        if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
    }

    fn undo_host_changes(&mut self) -> Result<(), String> {
        let failures: Vec<String> =
            std::mem::take(&mut self.host_changes).into_iter().rev().filter_map(|undo| undo().err()).collect();
        if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
    }

    /// Stops and removes the containers the case made that are still listed: those whose id
    /// CreateContainer returned, and any carrying this run's label. Removing their pods would
    /// take them too, but a runtime that keeps containers of a removed pod must not keep ours.
    async fn remove_containers(&mut self) -> Result<(), String> {
        let made = std::mem::take(&mut self.containers);
        let run = self.run.clone();
        let runtime = self.client.runtime.clone();
        let remove = async move {
            let listed = runtime.clone().list_containers(ListContainersRequest { filter: None }).await;
            let listed = listed.map_err(|s| rpc_failed("ListContainers", s))?.into_inner().containers;
            let ours = listed
                .into_iter()
                .filter(|c| made.contains(&c.id) || c.labels.get(RUN_LABEL) == Some(&run))
                .map(|c| c.id);
            let mut failures = Vec::new();
            for id in ours {
                let stopped_and_removed = async {
                    let stop = StopContainerRequest { container_id: id.clone(), timeout: 0 };
                    runtime.clone().stop_container(stop).await.map_err(|s| rpc_failed("StopContainer", s))?;
                    let remove = RemoveContainerRequest { container_id: id.clone() };
                    runtime.clone().remove_container(remove).await.map_err(|s| rpc_failed("RemoveContainer", s))?;
                    Ok::<_, String>(())
                };
                if let Err(why) = stopped_and_removed.await {
                    failures.push(format!("container {id}: {why}"));
                }
            }
            if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
        };
        tokio::time::timeout(CLEANUP_TIMEOUT, remove)
            .await
            .unwrap_or_else(|_| Err(format!("removing the case's containers took over {CLEANUP_TIMEOUT:?}")))
    }

    /// Stops and removes the pods the case made that are still listed: those whose id RunPodSandbox
    /// returned, and any carrying this run's label (a runtime may keep a pod whose RunPodSandbox
    /// failed). They are forgotten either way. Listing every pod rather than filtering by label
    /// keeps the cleanup independent of the runtime's filters, which the cases test.
    async fn remove_pods(&mut self) -> Result<(), String> {
        let made = std::mem::take(&mut self.pods);
        let run = self.run.clone();
        let runtime = self.client.runtime.clone();
        let remove = async move {
            let listed = runtime.clone().list_pod_sandbox(ListPodSandboxRequest { filter: None }).await;
            let listed = listed.map_err(|s| rpc_failed("ListPodSandbox", s))?.into_inner().items;
            let ours = listed
                .into_iter()
                .filter(|pod| made.contains(&pod.id) || pod.labels.get(RUN_LABEL) == Some(&run))
                .map(|pod| pod.id);
            let mut failures = Vec::new();
            for id in ours {
                let stopped_and_removed = async {
                    let stop = StopPodSandboxRequest { pod_sandbox_id: id.clone() };
                    runtime.clone().stop_pod_sandbox(stop).await.map_err(|s| rpc_failed("StopPodSandbox", s))?;
                    let remove = RemovePodSandboxRequest { pod_sandbox_id: id.clone() };
                    runtime.clone().remove_pod_sandbox(remove).await.map_err(|s| rpc_failed("RemovePodSandbox", s))?;
                    Ok::<_, String>(())
                };
                if let Err(why) = stopped_and_removed.await {
                    failures.push(format!("pod {id}: {why}"));
                }
            }
            if failures.is_empty() { Ok(()) } else { Err(failures.join("; ")) }
        };
        tokio::time::timeout(CLEANUP_TIMEOUT, remove)
            .await
            .unwrap_or_else(|_| Err(format!("removing the case's pods took over {CLEANUP_TIMEOUT:?}")))
    }

    /// Makes `which` the running case's to pull and to have removed after it. It must not be in
    /// the runtime before the case first claims it: the runner would then remove an image that
    /// someone else pulled, and the case would not see a pull that starts from nothing.
    pub(crate) async fn claim(&mut self, which: LabImage) -> CaseResult {
        if self.pulled.contains(&which) {
            return Ok(());
        }
        let id = self.images.id(which).clone();
        let listed = self.list_images().await.map_err(|e| format!("checking that {which} is not pulled yet: {e}"))?;
        if listed.iter().any(|image| is_image_id(&image.id, &id)) {
            return Err(Stop::Skip(format!(
                "{} ({id}) is already in the runtime and this suite removes only what it pulled: \
                 remove it to run this case",
                self.images.reference(which)
            )));
        }
        self.pulled.insert(which);
        Ok(())
    }

    /// Makes sure the runtime has `which` for a container to run, as critest does before it
    /// creates one: pulled (and removed after the case) if absent, else used as it is.
    pub(crate) async fn use_image(&mut self, which: LabImage) -> CaseResult {
        if self.pulled.contains(&which) {
            return Ok(());
        }
        let reference = self.images.reference(which);
        let spec = || Some(ImageSpec { image: reference.clone(), ..Default::default() });
        let status = self.client.image.image_status(ImageStatusRequest { image: spec(), verbose: false }).await;
        if status.map_err(|s| rpc_failed("ImageStatus", s))?.into_inner().image.is_some() {
            return Ok(());
        }
        self.pulled.insert(which);
        let pull = PullImageRequest { image: spec(), auth: None, sandbox_config: None };
        self.client.image.pull_image(pull).await.map_err(|s| rpc_failed(&format!("PullImage {reference:?}"), s))?;
        Ok(())
    }

    /// Removes those of the case's images that are still there, forgetting them either way: one
    /// that stays makes the next case that claims it skip, saying so.
    async fn remove_pulled(&mut self) -> Result<(), String> {
        let pulled = std::mem::take(&mut self.pulled);
        if pulled.is_empty() {
            return Ok(());
        }
        let remove = async {
            for image in self.list_images().await? {
                if pulled.iter().any(|which| is_image_id(&image.id, self.images.id(*which))) {
                    let request =
                        RemoveImageRequest { image: Some(ImageSpec { image: image.id, ..Default::default() }) };
                    self.client.image.remove_image(request).await.map_err(|s| rpc_failed("RemoveImage", s))?;
                }
            }
            Ok(())
        };
        tokio::time::timeout(CLEANUP_TIMEOUT, remove)
            .await
            .unwrap_or_else(|_| Err(format!("removing the case's images took over {CLEANUP_TIMEOUT:?}")))
    }

    async fn list_images(&mut self) -> Result<Vec<k8s_cri::v1::Image>, String> {
        let listed = self.client.image.list_images(ListImagesRequest { filter: None }).await;
        Ok(listed.map_err(|s| rpc_failed("ListImages", s))?.into_inner().images)
    }
}
