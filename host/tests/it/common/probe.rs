//! The probe fixture skill, shared by the tests running at the same time.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Mutex;

use bollard::query_parameters::{ListContainersOptions, ListImagesOptions, RemoveImageOptions};
use skillhost::engine::Engine;
use skillhost::{Host, InvocationResult, Status};

use skillhost::testing::on_engine_thread;

use super::{
    copy_fixture, ensure_base_images, host_for, remove_containers, skillhost, unique_name,
};

/// The probe fixture, built once and shared by the tests running at the same time; the
/// last one to finish removes its image, even when it failed.
pub struct Probe {
    pub name: String,
    pub root: PathBuf,
}

struct SharedProbe {
    _dir: tempfile::TempDir,
    name: String,
    root: PathBuf,
    users: usize,
}

static PROBE: Mutex<Option<SharedProbe>> = Mutex::new(None);

impl Probe {
    pub fn acquire() -> Probe {
        ensure_base_images();
        let mut shared = PROBE.lock().unwrap_or_else(|e| e.into_inner());
        let probe = shared.get_or_insert_with(|| {
            let name = unique_name("probe");
            let dir = copy_fixture("probe", &name);
            // Built here, once, so no test spends its own patience on the build.
            let built = skillhost()
                .arg("--skills-dir")
                .arg(dir.path())
                .args(["build", &name])
                .output()
                .unwrap();
            assert!(
                built.status.success(),
                "building the probe failed: {}",
                String::from_utf8_lossy(&built.stderr)
            );
            SharedProbe {
                root: dir.path().to_path_buf(),
                _dir: dir,
                name,
                users: 0,
            }
        });
        probe.users += 1;
        Probe {
            name: probe.name.clone(),
            root: probe.root.clone(),
        }
    }

    /// Invoke `action` on a fresh host, insist on `ok`, and return the output.
    pub async fn ok(&self, action: &str, args: serde_json::Value) -> serde_json::Value {
        let result = self.host().await.invoke(&self.name, action, args).await;
        assert_status(&result, Status::Ok);
        result.output.unwrap()
    }

    pub async fn host(&self) -> Host {
        host_for(&self.root).await
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        let mut shared = PROBE.lock().unwrap_or_else(|e| e.into_inner());
        let Some(probe) = shared.as_mut() else { return };
        probe.users -= 1;
        if probe.users == 0 {
            remove_images_of(&probe.name);
            *shared = None;
        }
    }
}

/// Remove every container and then every image labelled as `skill`'s. A container of the
/// skill still running (a worker, a started prewarmed container whose host has not yet
/// removed it) would make the engine refuse to remove its image, so containers go first.
pub fn remove_images_of(skill: &str) {
    let filter = format!("io.skillhost.skill={skill}");
    let filter_text = filter.clone();
    let label = move || Some(HashMap::from([("label".to_string(), vec![filter.clone()])]));
    let failures = on_engine_thread(move |docker| async move {
        let mut failures = remove_containers(&docker, "label", &filter_text).await;
        let images = ListImagesOptions {
            filters: label(),
            ..Default::default()
        };
        for image in docker.list_images(Some(images)).await.unwrap_or_default() {
            let options = RemoveImageOptions {
                force: true,
                ..Default::default()
            };
            if let Err(e) = docker.remove_image(&image.id, Some(options), None).await {
                if !e.to_string().contains("No such image") {
                    failures.push(format!("image {}: {e}", image.id));
                }
            }
        }
        failures
    });
    for failure in failures.unwrap_or_else(|| vec!["no engine thread".into()]) {
        eprintln!("cleanup of {skill}: cannot remove {failure}");
    }
}

/// intermediate containers carrying the skill label too; those are not counted.
pub async fn containers_with_label(label: &str, value: &str) -> usize {
    containers_with_labels(&[format!("{label}={value}")]).await
}

/// skillhost's containers, running or not, carrying every one of `labels` (`key=value`).
pub async fn containers_with_labels(labels: &[String]) -> usize {
    let engine = Engine::connect().await.unwrap();
    let mut wanted = labels.to_vec();
    wanted.push("io.skillhost.managed=true".to_string());
    let options = ListContainersOptions {
        all: true,
        filters: Some(HashMap::from([("label".to_string(), wanted)])),
        ..Default::default()
    };
    skillhost::testing::docker(&engine)
        .list_containers(Some(options))
        .await
        .unwrap()
        .len()
}

/// Every test checks its own invocations left nothing behind. Removal happens after the
/// result is returned, so it gets a bound of its own.
pub async fn assert_gone(result: &InvocationResult) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = containers_with_label("io.skillhost.invocation", &result.id).await;
        if left == 0 {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the container of {} is still there 10 s after its result",
            result.id
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

pub fn assert_status(result: &InvocationResult, status: Status) {
    assert_eq!(
        result.status,
        status,
        "{}",
        serde_json::to_string_pretty(result).unwrap()
    );
}
