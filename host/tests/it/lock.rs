//! `skillhost lock` against the real engine: a deterministic lock of a deployment's
//! images, and `--check` naming each skill and what moved when the sources change.

use crate::common;

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
    // By name: the two files edited, and nothing else.
    assert!(
        stderr.contains(": changed file probe.py, changed file skill.yaml\n"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&lock_path).unwrap(),
        first,
        "--check writes nothing"
    );
}

/// `skillhost --skills-dir DIR ARGS...`, insisting on success; its stdout as JSON.
fn skillhost_json(dir: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = skillhost()
        .arg("--skills-dir")
        .arg(dir)
        .args(["--format", "json"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skillhost {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The image `list` names for `skill` now, after building it.
fn build_now(dir: &std::path::Path, skill: &str, cleanup: &ImageCleanup) -> String {
    let listed = skillhost_json(dir, &["list"]);
    let image = listed["skills"][0]["image"].as_str().unwrap().to_string();
    cleanup.add(image.clone());
    skillhost_json(dir, &["build", skill]);
    image
}

#[tokio::test]
async fn gc_keeps_what_the_sources_and_the_lock_need_and_nothing_outside_its_scope() {
    let cleanup = ImageCleanup::default();
    let name = unique_name("gc");
    let dir = copy_fixture("static-skill", &name);
    let data = dir.path().join(&name).join("data.txt");
    let original = std::fs::read_to_string(&data).unwrap();
    // An older build, pinned by a lock; a newer one; then the sources go back to the old.
    let pinned = build_now(dir.path(), &name, &cleanup);
    let deployment = dir.path().join("deployment.yaml");
    std::fs::write(&deployment, format!("skills:\n  {name}: \"^0.1\"\n")).unwrap();
    skillhost_json(
        dir.path(),
        &["lock", "--manifest", deployment.to_str().unwrap()],
    );
    let lock = dir.path().join("deployment.lock");
    std::fs::write(&data, "newer").unwrap();
    let newer = build_now(dir.path(), &name, &cleanup);
    std::fs::write(&data, &original).unwrap();
    // A skill outside the scope, with an unused older tag of its own.
    let other = unique_name("gc-other");
    let other_dir = copy_fixture("static-skill", &other);
    let other_old = build_now(other_dir.path(), &other, &cleanup);
    std::fs::write(other_dir.path().join(&other).join("data.txt"), "moved").unwrap();
    let other_new = build_now(other_dir.path(), &other, &cleanup);
    let engine = skillhost::engine::Engine::connect().await.unwrap();
    let present = |tag: String| {
        let engine = engine.clone();
        async move { engine.inspect_image(&tag).await.unwrap().is_some() }
    };

    let lock_arg = lock.to_str().unwrap();
    let dry = skillhost_json(dir.path(), &["gc", "--dry-run", "--lock", lock_arg]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(
        dry["images_removed"],
        serde_json::json!([newer.clone()]),
        "{dry}"
    );
    assert!(present(newer.clone()).await, "a dry run removes nothing");

    let done = skillhost_json(dir.path(), &["gc", "--lock", lock_arg]);
    assert_eq!(
        done["images_removed"],
        serde_json::json!([newer.clone()]),
        "{done}"
    );
    assert!(!present(newer).await);
    assert!(
        present(pinned.clone()).await,
        "the locked, current image stays"
    );
    assert!(
        present(other_old).await,
        "another skill's images are out of scope"
    );
    assert!(present(other_new).await);

    // With newer sources, the lock alone keeps the old image, which they no longer need.
    std::fs::write(&data, "newest").unwrap();
    let newest = build_now(dir.path(), &name, &cleanup);
    let done = skillhost_json(dir.path(), &["gc", "--lock", lock_arg]);
    assert_eq!(done["images_removed"], serde_json::json!([]), "{done}");
    assert!(present(pinned.clone()).await && present(newest.clone()).await);
    // Without the lock, the sources' image is all that is needed.
    let done = skillhost_json(dir.path(), &["gc"]);
    assert_eq!(
        done["images_removed"],
        serde_json::json!([pinned]),
        "{done}"
    );
    assert!(present(newest).await);
}
