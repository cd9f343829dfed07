//! The Docker Engine: the only module that speaks its API (through bollard). [`Engine`]
//! connects, checks the API version and does the image operations builds, locks and
//! shipping need; its [`containers`] seam (a [`ContainerEngine`], the Docker adapter in
//! [`docker`] or an in-memory double in tests) does every container, network and log call
//! of the host's lifecycles; [`swarm`] reads a swarm manager's records. Nothing here
//! shells out to the docker CLI.

pub(crate) mod containers;
pub(crate) mod docker;
#[cfg(test)]
pub(crate) mod double;
pub(crate) mod spec;
pub(crate) mod swarm;
pub(crate) mod thread;

pub use containers::CallError;
pub(crate) use containers::{ContainerEngine, Containers};

use std::collections::HashMap;
use std::time::Duration;

use bollard::query_parameters::{
    BuildImageOptions, CreateImageOptions, PushImageOptions, RemoveImageOptions, TagImageOptions,
};
use bollard::Docker;
use futures_util::{Stream, StreamExt};

use docker::{call_error, is_not_found, DockerContainers};

/// The oldest Engine API spoken: Debian bookworm's engine 20.10.
pub const MIN_API_VERSION: (u32, u32) = (1, 41);
/// How long the first contact may take before the engine counts as unavailable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_HOST: &str = "unix:///var/run/docker.sock";

/// Why the engine could not be used.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Nothing answered at the endpoint, in time or at all.
    #[error("the Docker Engine at {endpoint} is not available: {reason}. Is dockerd running, and may this user use its socket? DOCKER_HOST selects another engine")]
    Unavailable {
        /// `DOCKER_HOST`, or the default socket.
        endpoint: String,
        /// The innermost cause: the socket and the OS error, or the timeout.
        reason: String,
    },
    /// The engine's API is older than skillhost speaks.
    #[error("the Docker Engine at {endpoint} speaks API {found}; skillhost needs at least {}.{}", MIN_API_VERSION.0, MIN_API_VERSION.1)]
    TooOld {
        /// `DOCKER_HOST`, or the default socket.
        endpoint: String,
        /// The API version it reported.
        found: String,
    },
    /// A request to the engine failed.
    #[error("{action}: {source}")]
    Api {
        /// What was being done, e.g. `listing images`.
        action: String,
        /// The engine's answer.
        #[source]
        source: CallError,
    },
}

/// A failed image build, with the failing step and the engine's own error text.
#[derive(Debug, thiserror::Error)]
#[error("{}{message}{}", step.as_ref().map(|s| format!("{s}: ")).unwrap_or_default(), tail_text(output))]
pub struct BuildFailure {
    /// The `Step N/M : ...` line the engine was executing.
    pub step: Option<String>,
    /// The engine's error message, e.g. "The command ... returned a non-zero code: 1".
    pub message: String,
    /// The step's last lines of output.
    pub output: Vec<String>,
}

fn tail_text(output: &[String]) -> String {
    if output.is_empty() {
        return String::new();
    }
    format!(
        "\n  output of the failing step:\n    {}",
        output.join("\n    ")
    )
}

/// What a build reports while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    /// A new Dockerfile step began, e.g. `Step 2/4 : RUN make`.
    Step(String),
    /// A line of output from the current step or from a host-side build command.
    Output(String),
}

/// A connected engine.
#[derive(Debug, Clone)]
pub struct Engine {
    docker: Docker,
    endpoint: String,
    containers: Containers,
}

/// An engine call's failure, saying what was being done.
pub(crate) fn api_err<E: Into<CallError>>(
    action: impl Into<String>,
) -> impl FnOnce(E) -> EngineError {
    let action = action.into();
    move |source| EngineError::Api {
        action,
        source: source.into(),
    }
}

impl From<bollard::errors::Error> for CallError {
    fn from(e: bollard::errors::Error) -> Self {
        call_error(e)
    }
}

/// Lines of output a failure quotes: enough to show the error, not a whole build log.
const TAIL_LINES: usize = 20;

/// Append `line`, keeping only the last [`TAIL_LINES`].
pub(crate) fn keep_tail(lines: &mut Vec<String>, line: String) {
    lines.push(line);
    if lines.len() > TAIL_LINES {
        lines.remove(0);
    }
}

/// The engine's archive of a path could not be read as tar.
fn garbled_archive(path: &str, e: &std::io::Error) -> EngineError {
    EngineError::Api {
        action: format!("reading the engine's archive of {path}"),
        source: CallError::new(containers::Failure::Other, e.to_string()),
    }
}

impl Engine {
    /// Connect to `DOCKER_HOST` (or the local socket) and check the API version, failing
    /// within [`CONNECT_TIMEOUT`] when nothing answers.
    pub async fn connect() -> Result<Engine, EngineError> {
        let endpoint = std::env::var("DOCKER_HOST").unwrap_or_else(|_| DEFAULT_HOST.to_string());
        let unavailable = |reason: String| EngineError::Unavailable {
            endpoint: endpoint.clone(),
            reason,
        };
        // The per-request timeout bounds only the wait for response headers; streams
        // (builds, attach) run as long as they need. Long builds must not be cut.
        let docker = Docker::connect_with_defaults()
            .map_err(|e| unavailable(e.to_string()))?
            .with_timeout(Duration::from_secs(3600));
        let version = tokio::time::timeout(CONNECT_TIMEOUT, docker.version())
            .await
            .map_err(|_| unavailable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| unavailable(root_cause(&e)))?;
        let found = version.api_version.unwrap_or_default();
        if !api_at_least(&found, MIN_API_VERSION) {
            return Err(EngineError::TooOld { endpoint, found });
        }
        tracing::debug!(%endpoint, api = %found, "connected to the engine");
        let containers = std::sync::Arc::new(DockerContainers::new(docker.clone()));
        Ok(Engine {
            docker,
            endpoint,
            containers,
        })
    }

    /// Whether the engine answers now, within [`CONNECT_TIMEOUT`].
    pub async fn ping(&self) -> Result<(), EngineError> {
        let unavailable = |reason: String| EngineError::Unavailable {
            endpoint: self.endpoint.clone(),
            reason,
        };
        tokio::time::timeout(CONNECT_TIMEOUT, self.docker.ping())
            .await
            .map_err(|_| unavailable(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
            .map_err(|e| unavailable(root_cause(&e)))?;
        Ok(())
    }

    /// The containers, networks and logs of this engine, for the host's lifecycles.
    pub(crate) fn containers(&self) -> Containers {
        self.containers.clone()
    }

    /// The raw client, for skillhost's own tests (`skillhost::testing`); nothing else
    /// outside this module may reach it.
    #[cfg(feature = "testing")]
    pub(crate) fn client(&self) -> &Docker {
        &self.docker
    }

    /// Where the engine was reached: `DOCKER_HOST`, or the default socket.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The ID and labels of a local image, or `None` when it is absent.
    pub async fn inspect_image(&self, reference: &str) -> Result<Option<LocalImage>, EngineError> {
        match self.docker.inspect_image(reference).await {
            Ok(image) => {
                let platform = [image.os, image.architecture, image.variant]
                    .into_iter()
                    .flatten()
                    .filter(|part| !part.is_empty())
                    .collect::<Vec<_>>()
                    .join("/");
                let config = image.config.unwrap_or_default();
                Ok(Some(LocalImage {
                    id: image.id.unwrap_or_default(),
                    labels: config.labels.unwrap_or_default(),
                    entrypoint: config.entrypoint.unwrap_or_default(),
                    cmd: config.cmd.unwrap_or_default(),
                    platform,
                }))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(api_err(format!("inspecting image {reference}"))(e)),
        }
    }

    /// Build `context` (a tar) with the classic builder and tag it `tag`.
    pub async fn build_image(
        &self,
        context: Vec<u8>,
        request: &BuildRequest<'_>,
        on_event: &mut (dyn FnMut(BuildEvent) + Send),
    ) -> Result<Result<String, BuildFailure>, EngineError> {
        let options = BuildImageOptions {
            dockerfile: request.dockerfile.to_string(),
            t: Some(request.tag.to_string()),
            rm: true,
            forcerm: true,
            buildargs: Some(request.args.clone()),
            labels: Some(request.labels.clone()),
            ..Default::default()
        };
        // bollard sends exactly this tar; it must already be filtered and complete.
        let mut stream =
            self.docker
                .build_image(options, None, Some(bollard::body_full(context.into())));
        let mut step: Option<String> = None;
        let mut output: Vec<String> = Vec::new();
        let mut image_id = None;
        while let Some(item) = stream.next().await {
            let info = match item {
                Ok(info) => info,
                Err(bollard::errors::Error::DockerStreamError { error }) => {
                    return Ok(Err(BuildFailure {
                        step,
                        message: error.trim().to_string(),
                        output,
                    }))
                }
                Err(e) => return Err(api_err(format!("building {}", request.tag))(e)),
            };
            if let Some(detail) = info.error_detail.and_then(|d| d.message) {
                return Ok(Err(BuildFailure {
                    step,
                    message: detail.trim().to_string(),
                    output,
                }));
            }
            if let Some(id) = info.aux.and_then(|a| a.id) {
                image_id = Some(id);
            }
            for line in info.stream.iter().flat_map(|s| s.lines()) {
                let line = line.trim_end();
                if line.is_empty() {
                    continue;
                }
                if line.starts_with("Step ") {
                    step = Some(line.to_string());
                    output.clear();
                    on_event(BuildEvent::Step(line.to_string()));
                } else {
                    if !line.starts_with(" ---> ") && !line.starts_with("Removing intermediate") {
                        keep_tail(&mut output, line.to_string());
                    }
                    on_event(BuildEvent::Output(line.to_string()));
                }
            }
        }
        // The classic builder does not always send `aux`; the tag is authoritative.
        match image_id {
            Some(id) => Ok(Ok(id)),
            None => match self.inspect_image(request.tag).await? {
                Some(image) => Ok(Ok(image.id)),
                None => Ok(Err(BuildFailure {
                    step,
                    message: "the engine ended the build without producing an image".into(),
                    output,
                })),
            },
        }
    }

    /// Import a root filesystem tar as an image, like `docker import`.
    pub async fn import_image(
        &self,
        rootfs: Vec<u8>,
        repo: &str,
        tag: &str,
        changes: Vec<String>,
    ) -> Result<String, EngineError> {
        let options = CreateImageOptions {
            from_src: Some("-".into()),
            repo: Some(repo.into()),
            tag: Some(tag.into()),
            changes,
            ..Default::default()
        };
        let mut stream =
            self.docker
                .create_image(Some(options), Some(bollard::body_full(rootfs.into())), None);
        while let Some(item) = stream.next().await {
            item.map_err(api_err(format!("importing {repo}:{tag}")))?;
        }
        let reference = format!("{repo}:{tag}");
        self.inspect_image(&reference)
            .await?
            .map(|i| i.id)
            .ok_or_else(|| EngineError::Api {
                action: format!("importing {reference}"),
                source: CallError::new(
                    containers::Failure::Other,
                    "the engine reported no image after the import",
                ),
            })
    }

    /// The OCI runtimes the engine offers, e.g. `runc`, `runsc`.
    pub async fn runtimes(&self) -> Result<Vec<String>, EngineError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(api_err("asking the engine for its runtimes"))?;
        let mut names: Vec<String> = info.runtimes.unwrap_or_default().into_keys().collect();
        names.sort();
        Ok(names)
    }

    /// Push `repo:tag` to the registry its name starts with. The engine's own error text
    /// (the registry's answer) is the error's source.
    pub async fn push_image(
        &self,
        repo: &str,
        tag: &str,
        on_progress: &(dyn Fn(TransferProgress) + Send + Sync),
    ) -> Result<(), EngineError> {
        let options = PushImageOptions {
            tag: Some(tag.into()),
            ..Default::default()
        };
        let mut stream = self.docker.push_image(repo, Some(options), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(api_err(format!("pushing {repo}:{tag}")))?;
            on_progress(transfer_progress(None, info.status, info.progress_detail));
        }
        Ok(())
    }

    /// Pull `reference` (`repo@sha256:...` or `repo:tag`).
    pub async fn pull_image(
        &self,
        reference: &str,
        on_progress: &(dyn Fn(TransferProgress) + Send + Sync),
    ) -> Result<(), EngineError> {
        let options = CreateImageOptions {
            from_image: Some(reference.into()),
            ..Default::default()
        };
        let mut stream = self.docker.create_image(Some(options), None, None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(api_err(format!("pulling {reference}")))?;
            on_progress(transfer_progress(
                info.id,
                info.status,
                info.progress_detail,
            ));
        }
        Ok(())
    }

    /// The registry digests the engine knows for `image`, e.g.
    /// `127.0.0.1:5000/skill-echo@sha256:...`.
    pub async fn repo_digests(&self, image: &str) -> Result<Vec<String>, EngineError> {
        let inspected = self
            .docker
            .inspect_image(image)
            .await
            .map_err(api_err(format!("inspecting image {image}")))?;
        Ok(inspected.repo_digests.unwrap_or_default())
    }

    /// Remove the name `reference` (a tag or a digest reference); the image stays while
    /// other names hold it. A name already gone is not an error.
    pub async fn untag(&self, reference: &str) -> Result<(), EngineError> {
        let options = RemoveImageOptions {
            noprune: false,
            ..Default::default()
        };
        match self
            .docker
            .remove_image(reference, Some(options), None)
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(api_err(format!("removing the name {reference}"))(e)),
        }
    }

    /// The contents of regular files of `image` (`None` for each one it lacks), read
    /// through a container that is created from it, never started, and removed again.
    /// `labels` mark that container, so a host that dies meanwhile leaves nothing the
    /// next one does not remove.
    pub(crate) async fn read_image_files(
        &self,
        image: &str,
        paths: &[&str],
        labels: HashMap<String, String>,
    ) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        let body = bollard::models::ContainerCreateBody {
            image: Some(image.to_string()),
            // Never run; an image without a command (FROM scratch) still needs one named.
            entrypoint: Some(vec!["/skillhost-never-started".to_string()]),
            labels: Some(labels),
            network_disabled: Some(true),
            ..Default::default()
        };
        let created = self
            .docker
            .create_container(
                None::<bollard::query_parameters::CreateContainerOptions>,
                body,
            )
            .await
            .map_err(api_err(format!(
                "creating a container of {image} to read its files"
            )))?;
        let mut files = Vec::with_capacity(paths.len());
        let mut failure = None;
        for path in paths {
            match self.read_container_file(&created.id, path).await {
                Ok(file) => files.push(file),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let options = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            ..Default::default()
        };
        let removed = self
            .docker
            .remove_container(&created.id, Some(options))
            .await
            .map_err(api_err(format!("removing container {}", created.id)));
        match failure {
            Some(e) => Err(e),
            None => removed.map(|()| files),
        }
    }

    /// One regular file of a container, from the engine's archive of it; `None` when the
    /// path is missing or is not a regular file.
    async fn read_container_file(
        &self,
        id: &str,
        path: &str,
    ) -> Result<Option<Vec<u8>>, EngineError> {
        let options = bollard::query_parameters::DownloadFromContainerOptions {
            path: path.to_string(),
        };
        let mut stream = self.docker.download_from_container(id, Some(options));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            match chunk {
                Ok(bytes) => archive.extend_from_slice(&bytes),
                Err(e) if is_not_found(&e) => return Ok(None),
                Err(e) => return Err(api_err(format!("reading {path} of container {id}"))(e)),
            }
        }
        let mut tar = tar::Archive::new(archive.as_slice());
        let entries = tar.entries().map_err(|e| garbled_archive(path, &e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| garbled_archive(path, &e))?;
            if entry.header().entry_type().is_file() {
                let mut contents = Vec::new();
                std::io::Read::read_to_end(&mut entry, &mut contents)
                    .map_err(|e| garbled_archive(path, &e))?;
                return Ok(Some(contents));
            }
        }
        Ok(None)
    }

    /// Every tag of every local image, as (tag, image ID) pairs.
    pub(crate) async fn image_tags(&self) -> Result<Vec<(String, String)>, EngineError> {
        let listed = self
            .docker
            .list_images(Some(bollard::query_parameters::ListImagesOptions::default()))
            .await
            .map_err(api_err("listing images"))?;
        Ok(listed
            .into_iter()
            .flat_map(|image| {
                let id = image.id;
                image
                    .repo_tags
                    .into_iter()
                    .map(move |tag| (tag, id.clone()))
            })
            .collect())
    }

    /// Remove the tag `tag` unless a container uses its image; the engine's refusal is the
    /// error.
    pub(crate) async fn remove_tag_unless_used(&self, tag: &str) -> Result<(), EngineError> {
        let options = RemoveImageOptions {
            force: false,
            noprune: false,
            ..Default::default()
        };
        self.docker
            .remove_image(tag, Some(options), None)
            .await
            .map(drop)
            .map_err(api_err(format!("removing {tag}")))
    }

    /// Remove the untagged images labelled `label=value`, but `keep`: what a build of the
    /// same image in another process left when its tag was moved to this one's (two
    /// processes whose build locks are not shared: another user, another temporary
    /// directory). One a container still uses stays. Their IDs.
    pub(crate) async fn remove_untagged(
        &self,
        label: &str,
        value: &str,
        keep: &str,
    ) -> Result<Vec<String>, EngineError> {
        let options = bollard::query_parameters::ListImagesOptions {
            filters: Some(HashMap::from([
                ("dangling".to_string(), vec!["true".to_string()]),
                ("label".to_string(), vec![format!("{label}={value}")]),
            ])),
            ..Default::default()
        };
        let listed = self
            .docker
            .list_images(Some(options))
            .await
            .map_err(api_err("listing untagged images"))?;
        let mut removed = Vec::new();
        for image in listed.into_iter().filter(|i| i.id != keep) {
            match self.remove_tag_unless_used(&image.id).await {
                Ok(()) => removed.push(image.id),
                Err(e) => tracing::debug!(image = %image.id, "an untagged build stays: {e}"),
            }
        }
        Ok(removed)
    }

    /// The images `tags` as one `docker save` archive, chunk by chunk.
    pub(crate) fn save_images<'a>(
        &'a self,
        tags: &'a [&'a str],
    ) -> impl Stream<Item = Result<bytes::Bytes, EngineError>> + 'a {
        self.docker
            .export_images(tags)
            .map(|chunk| chunk.map_err(api_err("saving images")))
    }

    /// Load a `docker save` archive, read chunk by chunk.
    pub(crate) async fn load_images(
        &self,
        archive: impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), EngineError> {
        let options = bollard::query_parameters::ImportImageOptions {
            quiet: true,
            ..Default::default()
        };
        let mut loading = self.docker.import_image_stream(options, archive, None);
        while let Some(item) = loading.next().await {
            item.map_err(api_err("loading images"))?;
        }
        Ok(())
    }

    /// Point `repo:tag` at `image`.
    pub async fn tag_image(&self, image: &str, repo: &str, tag: &str) -> Result<(), EngineError> {
        let options = TagImageOptions {
            repo: Some(repo.into()),
            tag: Some(tag.into()),
        };
        self.docker
            .tag_image(image, Some(options))
            .await
            .map_err(api_err(format!("tagging {image} as {repo}:{tag}")))
    }
}

/// One line of a push's or pull's progress: a layer's status and, while it moves, its
/// bytes so far and in all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferProgress {
    /// The layer, when the line is about one.
    pub layer: Option<String>,
    /// The engine's status, e.g. `Pushing`, `Pushed`, `Pull complete`.
    pub status: String,
    /// Bytes moved so far and in all, while a layer moves.
    pub bytes: Option<(i64, i64)>,
}

impl std::fmt::Display for TransferProgress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(layer) = &self.layer {
            write!(f, "{layer}: ")?;
        }
        write!(f, "{}", self.status)?;
        if let Some((current, total)) = self.bytes.filter(|(_, total)| *total > 0) {
            write!(
                f,
                " {:.1}/{:.1} MB",
                current as f64 / 1e6,
                total as f64 / 1e6
            )?;
        }
        Ok(())
    }
}

fn transfer_progress(
    layer: Option<String>,
    status: Option<String>,
    detail: Option<bollard::models::ProgressDetail>,
) -> TransferProgress {
    TransferProgress {
        layer,
        status: status.unwrap_or_default(),
        bytes: detail.and_then(|d| Some((d.current?, d.total?))),
    }
}

/// A local image.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// The engine's image ID, `sha256:...`.
    pub id: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Its `ENTRYPOINT`.
    pub entrypoint: Vec<String>,
    /// Its `CMD`.
    pub cmd: Vec<String>,
    /// `os/architecture[/variant]`, e.g. `linux/amd64`.
    pub platform: String,
}

/// What to build.
#[derive(Debug, Clone)]
pub struct BuildRequest<'a> {
    /// `repository:tag` for the result.
    pub tag: &'a str,
    /// The Dockerfile's path inside the context.
    pub dockerfile: &'a str,
    /// Docker build args.
    pub args: HashMap<String, String>,
    /// Labels the image gets.
    pub labels: HashMap<String, String>,
}

fn api_at_least(found: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = found.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let found = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    found >= (major, minor)
}

/// The innermost error message, which names the socket and the OS error.
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    let mut message = err.to_string();
    while let Some(source) = current.source() {
        message = source.to_string();
        current = source;
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_compare_numerically() {
        assert!(api_at_least("1.41", (1, 41)));
        assert!(api_at_least("1.50", (1, 41)));
        assert!(api_at_least("2.0", (1, 41)));
        assert!(!api_at_least("1.40", (1, 41)));
        assert!(!api_at_least("1.9", (1, 41)));
        assert!(!api_at_least("", (1, 41)));
    }

    #[test]
    fn build_failures_show_step_message_and_output() {
        let failure = BuildFailure {
            step: Some("Step 2/3 : RUN false".into()),
            message: "The command '/bin/sh -c false' returned a non-zero code: 1".into(),
            output: vec!["oops".into()],
        };
        let text = failure.to_string();
        assert!(
            text.starts_with("Step 2/3 : RUN false: The command"),
            "{text}"
        );
        assert!(text.ends_with("\n    oops"), "{text}");
    }
}
