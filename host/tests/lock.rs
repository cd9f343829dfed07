//! `skillhost lock` against the real engine: a deterministic lock of a deployment's
//! images, and `--check` naming each skill and what moved when the sources change.

mod common;

use common::{copy_fixture, ensure_base_images, skillhost, unique_name, ImageCleanup};
use skillhost::lock::LockFile;

#[tokio::test]
async fn a_lock_pins_the_images_and_check_names_what_moved() {
    ensure_base_images();
    let cleanup = ImageCleanup::default();
    let name = unique_name("lock");
    let dir = copy_fixture("probe", &name);
    let deployment = dir.path().join("deployment.yaml");
    std::fs::write(&deployment, format!("skills:\n  {name}: \"^0.1\"\n")).unwrap();
    let lock_path = dir.path().join("deployment.lock");
    let lock = |extra: &[&str]| {
        skillhost()
            .arg("--skills-dir")
            .arg(dir.path())
            .args(["lock", "--manifest"])
            .arg(&deployment)
            .args(extra)
            .output()
            .unwrap()
    };

    let made = lock(&[]);
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let locked = LockFile::load(&lock_path).unwrap();
    assert_eq!(locked.skills.len(), 1);
    let entry = &locked.skills[0];
    cleanup.add(entry.image.clone());
    assert_eq!(
        (
            entry.name.as_str(),
            entry.version.as_str(),
            entry.protocol.as_str()
        ),
        (name.as_str(), "0.1.0", "^1")
    );
    assert_eq!(entry.hash.len(), 64);
    assert_eq!(entry.image, format!("skill-{name}:{}", &entry.hash[..16]));
    let engine = skillhost::engine::Engine::connect().await.unwrap();
    let image = engine.inspect_image(&entry.image).await.unwrap().unwrap();
    assert_eq!(entry.image_id, image.id);
    assert_eq!(entry.platform, image.platform);
    assert!(entry.platform.starts_with("linux/"), "{}", entry.platform);
    let python = engine
        .inspect_image("skillhost/python:latest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.base_images.len(), 1);
    assert_eq!(entry.base_images[0].reference, "skillhost/python:latest");
    assert_eq!(entry.base_images[0].id, python.id);
    assert!(
        entry.covers.iter().any(|c| c.starts_with("context")),
        "{:?}",
        entry.covers
    );

    // The same sources give the same bytes, and the check passes.
    let first = std::fs::read_to_string(&lock_path).unwrap();
    assert!(lock(&[]).status.success());
    assert_eq!(std::fs::read_to_string(&lock_path).unwrap(), first);
    let checked = lock(&["--check"]);
    assert_eq!(
        checked.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    // A source edit and a version bump are each named, and nothing is rewritten.
    let skill_dir = dir.path().join(&name);
    let source = skill_dir.join("probe.py");
    let text = std::fs::read_to_string(&source).unwrap();
    std::fs::write(&source, format!("{text}\n# edited\n")).unwrap();
    let manifest = skill_dir.join("skill.yaml");
    let yaml = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, yaml.replace("version: 0.1.0", "version: 0.1.1")).unwrap();
    let moved = lock(&["--check"]);
    assert_eq!(moved.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&moved.stderr);
    assert!(
        stderr.contains(&format!("skill {name}: version moved from 0.1.0 to 0.1.1")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "skill {name}: content hash moved from {}",
            &entry.hash[..16]
        )),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap(),
        first,
        "--check writes nothing"
    );
}
