//! Helpers shared by the integration tests, which run against the real Docker Engine.

pub mod probe;
pub mod registry;
pub mod service;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::Value;
use skillhost::build::{ImageBuilder, Observer};
use skillhost::engine::{BuildEvent, Engine};
use skillhost::testing::on_engine_thread;
use std::process::Output;

/// A name no other test run uses, valid as a skill name.
pub fn unique_name(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    format!(
        "it-{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Copy a fixture skill to a temporary directory, renamed so its image is the test's own.
pub fn copy_fixture(fixture_name: &str, skill_name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(skill_name);
    copy_dir(&fixture(fixture_name), &dest);
    let manifest = dest.join("skill.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(
        &manifest,
        text.replace("name: FIXTURE", &format!("name: {skill_name}")),
    )
    .unwrap();
    dir
}

pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// A fresh directory any skill user may write, and the options that mount it at
/// `/workspace`.
pub fn writable_workspace() -> (tempfile::TempDir, skillhost::InvokeOptions) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let options = skillhost::InvokeOptions::default().workspace(dir.path().to_path_buf());
    (dir, options)
}

/// The `skillhost` binary, run from the workspace root.
pub fn skillhost() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_skillhost"));
    cmd.current_dir(workspace_root());
    cmd
}

/// `skillhost --skills-dir ROOT test ARGS...`, with every image it may build registered
/// for removal first (as `list` names them), so a failing test leaves none behind.
pub fn skillhost_test(root: &Path, args: &[&str], cleanup: &ImageCleanup) -> Output {
    let listed = skillhost()
        .arg("--skills-dir")
        .arg(root)
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    for skill in listed["skills"].as_array().unwrap() {
        if let Some(image) = skill["image"].as_str() {
            cleanup.add(image);
        }
    }
    skillhost()
        .arg("--skills-dir")
        .arg(root)
        .arg("test")
        .args(args)
        .output()
        .unwrap()
}

/// A host with the default configuration over the skills in `root`.
pub async fn host_for(root: &Path) -> skillhost::Host {
    let config = skillhost::HostConfig::new(vec![root.to_path_buf()]);
    skillhost::Host::new(config)
        .await
        .expect("these tests need a Docker Engine")
}

/// Make sure the base images of images/ exist (a no-op when they do), so tests whose
/// fixtures build on them work on a fresh machine in any order.
pub fn ensure_base_images() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| {
        let out = skillhost().args(["images", "build"]).output().unwrap();
        assert!(
            out.status.success(),
            "skillhost images build failed (it needs root and debootstrap):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

/// Records build events, so tests can assert what a build did.
#[derive(Clone, Default)]
pub struct Recorder(pub Arc<Mutex<Vec<(String, BuildEvent)>>>);

impl Recorder {
    pub fn observer(&self) -> Observer {
        let events = self.0.clone();
        Arc::new(move |name, event| events.lock().unwrap().push((name.to_string(), event)))
    }

    pub fn steps(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter_map(|(_, e)| match e {
                BuildEvent::Step(s) => Some(s.clone()),
                BuildEvent::Output(_) => None,
            })
            .collect()
    }
}

pub async fn builder() -> (ImageBuilder, Recorder) {
    let recorder = Recorder::default();
    let engine = Engine::connect()
        .await
        .expect("these tests need a Docker Engine");
    (ImageBuilder::new(engine, recorder.observer()), recorder)
}

/// Removes the image tags it was given when dropped, even when the test panicked, on the
/// library's engine thread, because Drop cannot await.
#[derive(Default)]
pub struct ImageCleanup {
    tags: Mutex<Vec<String>>,
}

impl ImageCleanup {
    pub fn add(&self, tag: impl Into<String>) {
        self.tags.lock().unwrap().push(tag.into());
    }
}

impl Drop for ImageCleanup {
    fn drop(&mut self) {
        let tags = std::mem::take(&mut *self.tags.lock().unwrap());
        if tags.is_empty() {
            return;
        }
        on_engine_thread(move |docker| async move {
            for tag in tags {
                // A test's own skill image may still have a container its host has not
                // removed yet (the removal runs on the runtime this drop is blocking):
                // removing the tag alone would leave the image behind, untagged.
                if tag.starts_with("skill-it-") {
                    for failure in remove_containers(&docker, "ancestor", &tag).await {
                        eprintln!("cleanup of {tag}: cannot remove {failure}");
                    }
                }
                let options = bollard::query_parameters::RemoveImageOptions {
                    force: true,
                    noprune: false,
                    ..Default::default()
                };
                if let Err(e) = docker.remove_image(&tag, Some(options), None).await {
                    if !e.to_string().contains("No such image") {
                        eprintln!("cleanup: cannot remove {tag}: {e}");
                    }
                }
            }
        });
    }
}

/// Remove every container matching the engine's list filter `key=value` (`label`,
/// `ancestor`, ...); what could not be removed, for the caller to report.
pub async fn remove_containers(docker: &bollard::Docker, key: &str, value: &str) -> Vec<String> {
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(std::collections::HashMap::from([(
            key.to_string(),
            vec![value.to_string()],
        )])),
        ..Default::default()
    };
    let mut failures = Vec::new();
    for container in docker
        .list_containers(Some(options))
        .await
        .unwrap_or_default()
    {
        let id = container.id.unwrap_or_default();
        let remove = bollard::query_parameters::RemoveContainerOptions {
            force: true,
            v: true,
            ..Default::default()
        };
        if let Err(e) = docker.remove_container(&id, Some(remove)).await {
            failures.push(format!("container {id}: {e}"));
        }
    }
    failures
}

/// Run the CLI and insist on exit code 0, showing its stderr otherwise.
pub fn run_ok(args: &[&str]) -> std::process::Output {
    let out = skillhost().args(args).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "skillhost {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A bundled skill's image in use by a test. Tests of one process share it: the first
/// to take it notes whether it was already there, and the last to let it go removes it
/// when the tests built it, even when they failed.
pub struct BundledImage {
    skill: String,
}

/// Per bundled skill: the tests using its image, and its tag when tests built it.
static BUNDLED: Mutex<Vec<(String, usize, ImageCleanup)>> = Mutex::new(Vec::new());

/// Take a bundled skill's image for the length of a test (see [`BundledImage`]).
pub fn cleanup_if_built_now(skill: &str) -> BundledImage {
    ensure_base_images();
    let mut shared = BUNDLED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(entry) = shared.iter_mut().find(|(name, _, _)| name == skill) {
        entry.1 += 1;
    } else {
        let cleanup = ImageCleanup::default();
        let out = skillhost()
            .args(["list", "--format", "json"])
            .output()
            .unwrap();
        let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let entry = listed["skills"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == skill)
            .unwrap()
            .clone();
        if entry["present"] == false {
            cleanup.add(entry["image"].as_str().unwrap());
        }
        shared.push((skill.to_string(), 1, cleanup));
    }
    BundledImage {
        skill: skill.to_string(),
    }
}

impl Drop for BundledImage {
    fn drop(&mut self) {
        let mut shared = BUNDLED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = shared.iter().position(|(name, _, _)| *name == self.skill) {
            shared[at].1 -= 1;
            if shared[at].1 == 0 {
                // Its drop removes the tag.
                shared.remove(at);
            }
        }
    }
}
