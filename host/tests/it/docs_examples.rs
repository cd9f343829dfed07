//! The complete skills docs/protocol.md shows, in Python and in shell, are the ones in
//! docs/examples/, and they work as the page says, against the real engine: each
//! manifest's examples give the output or the error code they promise.

use crate::common;

use std::path::PathBuf;

use serde_json::json;
use skillhost::catalog::Skill;
use skillhost::{Host, InvocationPath, InvokeOptions, Status};

use common::probe::assert_status;
use common::{copy_dir, ensure_base_images, host_for, unique_name, workspace_root, ImageCleanup};

fn examples() -> PathBuf {
    workspace_root().join("docs/examples")
}

/// Copy an example under a name of the test's own, so its image is the test's to remove.
fn copy_example(example: &str, name: &str, extra_run: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join(name);
    copy_dir(&examples().join(example), &dest);
    let manifest = dest.join("skill.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let text = text
        .replace(&format!("name: {example}\n"), &format!("name: {name}\n"))
        .replace("run:\n", &format!("run:\n{extra_run}"));
    std::fs::write(&manifest, text).unwrap();
    dir
}

#[test]
fn the_protocol_page_shows_each_example_file_whole() {
    let page = std::fs::read_to_string(workspace_root().join("docs/protocol.md")).unwrap();
    for example in ["word-count", "greet"] {
        for entry in std::fs::read_dir(examples().join(example)).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                page.contains(&text),
                "docs/protocol.md does not show {} as it is",
                path.display()
            );
        }
        // A valid manifest, as discovery would load it.
        Skill::load(&examples().join(example)).unwrap();
    }
    // The Node.js skill, the template for other languages, is a bundled one.
    let node = workspace_root().join("skills/json-pointer");
    for file in ["skill.yaml", "Dockerfile", "skill.js", ".dockerignore"] {
        let text = std::fs::read_to_string(node.join(file)).unwrap();
        assert!(
            page.contains(&text),
            "docs/protocol.md does not show skills/json-pointer/{file} as it is"
        );
    }
}

/// Run every example of the skill in `root` and check what each promises.
#[test]
fn the_production_page_shows_the_production_manifest_as_it_is() {
    let page = std::fs::read_to_string(workspace_root().join("docs/production.md")).unwrap();
    let file = std::fs::read_to_string(workspace_root().join("manifests/production.yaml")).unwrap();
    let shown: String = file.lines().map(|line| format!("    {line}\n")).collect();
    assert!(
        page.contains(&format!("    # manifests/production.yaml\n{shown}")),
        "docs/production.md should show manifests/production.yaml whole, indented:\n{shown}"
    );
}

async fn run_examples(host: &Host, name: &str, cleanup: &ImageCleanup) {
    let skill = host.catalog().get(name).unwrap().clone();
    assert!(!skill.manifest.examples.is_empty());
    for example in &skill.manifest.examples {
        let result = host
            .invoke(name, &example.action, example.args.clone())
            .await;
        if let Some(image) = &result.image {
            cleanup.add(image.clone());
        }
        match (&example.expect, &example.expect_error) {
            (Some(expected), _) => {
                assert_status(&result, Status::Ok);
                assert_eq!(result.output.as_ref(), Some(expected));
                assert_eq!(result.stats.progress_frames, 1);
                assert!(!result.logs.is_empty(), "the skill logs to stderr");
            }
            (None, Some(code)) => {
                assert_status(&result, Status::SkillError);
                assert_eq!(&result.error.unwrap().code, code);
            }
            (None, None) => panic!("an example of {name} promises nothing"),
        }
    }
}

/// A host whose only skill is a copy of `example`, named after it, with `extra_run`
/// added to its `run:`; the directory must live as long as the host.
async fn example_host(example: &str, extra_run: &str) -> (Host, String, tempfile::TempDir) {
    ensure_base_images();
    let name = unique_name(example);
    let dir = copy_example(example, &name, extra_run);
    (host_for(dir.path()).await, name, dir)
}

#[tokio::test]
async fn the_python_example_keeps_its_promises_one_shot_and_in_serve_mode() {
    let cleanup = ImageCleanup::default();
    let (host, name, _dir) = example_host("word-count", "").await;
    run_examples(&host, &name, &cleanup).await;
    host.shutdown().await;

    // The same script answers many requests when the host runs it as a worker.
    let (host, name, _dir) = example_host("word-count", "  mode: serve\n").await;
    for text in ["one", "one two", "one two three"] {
        let result = host
            .invoke_with(
                &name,
                "count",
                json!({"text": text}),
                InvokeOptions::default(),
            )
            .await;
        if let Some(image) = &result.image {
            cleanup.add(image.clone());
        }
        assert_status(&result, Status::Ok);
        assert_eq!(result.path, InvocationPath::Warm);
        let words = text.split(' ').count();
        assert_eq!(result.output.unwrap()["words"], json!(words));
    }
    assert_eq!(host.idle_workers(&name), 1, "one worker answered all three");
    host.shutdown().await;
}

#[tokio::test]
async fn the_shell_example_keeps_its_promises() {
    let cleanup = ImageCleanup::default();
    let (host, name, _dir) = example_host("greet", "").await;
    run_examples(&host, &name, &cleanup).await;
    // The schema keeps anything the script could not print safely from reaching it.
    let result = host
        .invoke(&name, "hello", json!({"name": "\"}, \"evil\": 1"}))
        .await;
    assert_status(&result, Status::Rejected);
    assert_eq!(result.error.unwrap().code, "invalid_args");
    host.shutdown().await;
}
