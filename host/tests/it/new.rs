//! `skillhost new`: each template makes a skill that builds and passes `skillhost test`
//! unchanged, against the real engine.

use crate::common;

use serde_json::Value;
use skillhost::api::exit_code;

use common::{ensure_base_images, skillhost, skillhost_test, unique_name, ImageCleanup};

fn scaffold_keeps_its_examples(lang: &str, extra: &[&str]) {
    ensure_base_images();
    let cleanup = ImageCleanup::default();
    let parent = tempfile::tempdir().unwrap();
    let name = unique_name(&format!("new-{lang}"));
    let made = skillhost()
        .args(["new", &name, "--lang", lang, "--dir"])
        .arg(parent.path())
        .args(extra)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    for file in ["skill.yaml", "Dockerfile", ".dockerignore"] {
        assert!(parent.path().join(&name).join(file).is_file(), "{file}");
    }
    if lang == "rust" {
        // Locked from the start, so the first build is reproducible and its hash stays.
        assert!(parent.path().join(&name).join("Cargo.lock").is_file());
    }
    let again = skillhost()
        .args(["new", &name, "--lang", lang, "--dir"])
        .arg(parent.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    // Unchanged, it passes `skillhost test`: every example runs and keeps its promise.
    let run = skillhost_test(parent.path(), &["--format", "json"], &cleanup);
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        run.status.code(),
        Some(exit_code::OK),
        "{lang}: {report:#}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        report["passed"].as_u64().unwrap() >= 1,
        "{lang}: {report:#}"
    );
    assert_eq!(report["failed"], 0);
}

#[test]
fn the_python_template_builds_and_keeps_its_examples() {
    scaffold_keeps_its_examples("python", &[]);
}

#[test]
fn the_shell_template_builds_and_keeps_its_examples() {
    scaffold_keeps_its_examples("shell", &[]);
}

/// skill-sdk is not on crates.io yet, so the scaffold builds against this checkout's; its
/// Cargo.toml still names the SDK by version only.
#[test]
fn the_rust_template_builds_with_skill_sdk_and_keeps_its_examples() {
    let sdk = common::workspace_root().join("skill-sdk");
    let sdk = sdk.to_str().unwrap();
    scaffold_keeps_its_examples("rust", &["--sdk-path", sdk]);
}

#[test]
fn the_rust_template_names_skill_sdk_by_version_alone() {
    let parent = tempfile::tempdir().unwrap();
    let made = skillhost()
        .args(["new", "by-version", "--lang", "rust", "--dir"])
        .arg(parent.path())
        .output()
        .unwrap();
    assert!(made.status.success());
    let cargo = std::fs::read_to_string(parent.path().join("by-version/Cargo.toml")).unwrap();
    assert!(cargo.contains("\nskill-sdk = \"0.1\"\n"), "{cargo}");
    assert!(!parent.path().join("by-version/.cargo").exists());

    let refused = skillhost()
        .args([
            "new",
            "other",
            "--lang",
            "shell",
            "--sdk-path",
            "skill-sdk",
            "--dir",
        ])
        .arg(parent.path())
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(exit_code::USAGE));
}
