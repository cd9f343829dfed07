//! `skillhost new`: each template makes a skill that builds and keeps every promise of its
//! manifest's examples, unchanged, against the real engine.

mod common;

use common::{ensure_base_images, host_for, skillhost, unique_name, ImageCleanup};
use skillhost::Status;

async fn scaffold_keeps_its_examples(lang: &str) {
    ensure_base_images();
    let cleanup = ImageCleanup::default();
    let parent = tempfile::tempdir().unwrap();
    let name = unique_name(&format!("new-{lang}"));
    let made = skillhost()
        .args(["new", &name, "--lang", lang, "--dir"])
        .arg(parent.path())
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
    let again = skillhost()
        .args(["new", &name, "--lang", lang, "--dir"])
        .arg(parent.path())
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));

    let host = host_for(parent.path()).await;
    let skill = host.catalog().get(&name).unwrap().clone();
    assert!(!skill.manifest.examples.is_empty());
    for example in &skill.manifest.examples {
        let result = host
            .invoke(&name, &example.action, example.args.clone())
            .await;
        if let Some(image) = &result.image {
            cleanup.add(image.clone());
        }
        match (&example.expect, &example.expect_error) {
            (Some(expected), _) => {
                assert_eq!(result.status, Status::Ok, "{lang}: {result:?}");
                assert_eq!(result.output.as_ref(), Some(expected), "{lang}");
            }
            (None, Some(code)) => {
                assert_eq!(result.status, Status::SkillError, "{lang}: {result:?}");
                assert_eq!(&result.error.unwrap().code, code);
            }
            (None, None) => panic!("an example of the {lang} template promises nothing"),
        }
    }
    host.shutdown().await;
}

#[tokio::test]
async fn the_python_template_builds_and_keeps_its_examples() {
    scaffold_keeps_its_examples("python").await;
}

#[tokio::test]
async fn the_shell_template_builds_and_keeps_its_examples() {
    scaffold_keeps_its_examples("shell").await;
}
