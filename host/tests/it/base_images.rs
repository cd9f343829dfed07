//! The base images in images/, built from Debian packages on the real engine.
//!
//! These images are the project's shared prerequisites (what `skillhost images build`
//! makes for every skill built on them), so the test leaves them in place.

use crate::common;

use serde_json::Value;

fn images_build() -> Vec<Value> {
    let out = common::run_ok(&["images", "build", "--format", "json"]);
    serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
}

#[tokio::test]
async fn base_images_build_once_and_run_as_non_root() {
    let first = images_build();
    let names: Vec<&str> = first.iter().map(|r| r["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["debian", "egress-proxy", "node", "python", "python-data"],
        "debian first: the others are built on it, and python before python-data"
    );

    let second = images_build();
    for (a, b) in first.iter().zip(&second) {
        assert_eq!(b["cache"], "hit", "{b}");
        assert_eq!(a["image_id"], b["image_id"]);
    }

    let docker = bollard::Docker::connect_with_defaults().unwrap();
    for report in &second {
        let name = report["name"].as_str().unwrap();
        let latest = docker
            .inspect_image(&format!("skillhost/{name}:latest"))
            .await
            .unwrap();
        assert_eq!(
            latest.id.as_deref(),
            report["image_id"].as_str(),
            "latest follows the newest build"
        );
    }
    // The images that run something run it as non-root: the runners' skills, the proxy.
    for name in ["python", "python-data", "node", "egress-proxy"] {
        let image = docker
            .inspect_image(&format!("skillhost/{name}:latest"))
            .await
            .unwrap();
        let config = image.config.unwrap();
        assert_eq!(config.user.as_deref(), Some("10001:10001"), "{name}");
        let labels = config.labels.unwrap();
        assert_eq!(labels["io.skillhost.base"], name);
        assert_eq!(labels["io.skillhost.hash"].len(), 64);
    }
}
