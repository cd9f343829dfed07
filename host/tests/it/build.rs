//! Building and reusing images on the real Docker Engine.

use crate::common;

use std::time::{Duration, Instant};

use common::{builder, copy_fixture, skillhost, unique_name, workspace_root, ImageCleanup};
use skillhost::build::{BuildError, CacheOutcome, ImageTarget};
use skillhost::catalog::{Catalog, Skill};

fn target_in(dir: &tempfile::TempDir, name: &str) -> ImageTarget {
    ImageTarget::for_skill(&Skill::load(&dir.path().join(name)).unwrap())
}

#[tokio::test]
async fn echo_builds_then_is_a_cache_hit() {
    let cleanup = ImageCleanup::default();
    let (builder, recorder) = builder().await;
    let catalog = Catalog::discover(&[workspace_root().join("skills")]).unwrap();
    let target = ImageTarget::for_skill(catalog.get("echo").expect("the bundled echo skill"));
    let plan = builder.plan(&target).await.unwrap();
    // Only an image this test created is removed: a developer's own echo image stays.
    if builder.cached(&plan).await.unwrap().is_none() {
        cleanup.add(plan.image());
    }

    let first = builder.ensure(&target, true).await.unwrap();
    assert_eq!(first.cache, CacheOutcome::Built);
    assert_eq!(first.image, format!("skill-echo:{}", &first.hash.0[..16]));
    assert!(recorder
        .steps()
        .iter()
        .any(|s| s.starts_with("running build command: cargo build")));
    assert!(recorder
        .steps()
        .iter()
        .any(|s| s.contains("COPY skill-echo /skill-echo")));

    let steps_before = recorder.steps().len();
    let second = builder.ensure(&target, false).await.unwrap();
    assert_eq!(second.cache, CacheOutcome::Hit);
    assert_eq!((second.image_id, second.hash), (first.image_id, first.hash));
    assert_eq!(
        recorder.steps().len(),
        steps_before,
        "a cache hit runs no compiler and no docker build"
    );
}

#[tokio::test]
async fn an_untagged_build_of_the_same_sources_goes_when_this_build_takes_the_tag() {
    let cleanup = ImageCleanup::default();
    let (builder, _) = builder().await;
    let name = unique_name("race");
    let dir = copy_fixture("static-skill", &name);
    let target = target_in(&dir, &name);
    let plan = builder.plan(&target).await.unwrap();
    cleanup.add(plan.image());
    // What a build of the same sources in another process (another user, another
    // temporary directory: no shared build lock) leaves when this build's tag wins: an
    // untagged image with the same content hash.
    let engine = skillhost::engine::Engine::connect().await.unwrap();
    let repository = format!("skill-{name}");
    let hash_label = format!("LABEL io.skillhost.hash={}", plan.hash().0);
    let empty_rootfs = tar::Builder::new(Vec::new()).into_inner().unwrap();
    let lost = engine
        .import_image(empty_rootfs, &repository, "lost-race", vec![hash_label])
        .await
        .unwrap();
    cleanup.add(lost.clone());
    engine
        .untag(&format!("{repository}:lost-race"))
        .await
        .unwrap();
    let built = builder.ensure(&target, false).await.unwrap();
    assert_eq!(built.cache, CacheOutcome::Built);
    assert!(
        engine.inspect_image(&lost).await.unwrap().is_none(),
        "the lost build's image is removed"
    );
    assert!(engine.inspect_image(&built.image).await.unwrap().is_some());
}

#[tokio::test]
async fn a_changed_file_gives_a_new_tag_and_reverting_reuses_the_old_one() {
    let cleanup = ImageCleanup::default();
    let (builder, recorder) = builder().await;
    let name = unique_name("change");
    let dir = copy_fixture("static-skill", &name);
    let data = dir.path().join(&name).join("data.txt");

    let original = builder
        .ensure(&target_in(&dir, &name), false)
        .await
        .unwrap();
    cleanup.add(&original.image);
    assert_eq!(original.cache, CacheOutcome::Built);

    std::fs::write(&data, "version two\n").unwrap();
    let changed = builder
        .ensure(&target_in(&dir, &name), false)
        .await
        .unwrap();
    cleanup.add(&changed.image);
    assert_eq!(changed.cache, CacheOutcome::Built);
    assert_ne!(changed.image, original.image);

    std::fs::write(&data, "version one\n").unwrap();
    let steps_before = recorder.steps().len();
    let reverted = builder
        .ensure(&target_in(&dir, &name), false)
        .await
        .unwrap();
    assert_eq!(reverted.cache, CacheOutcome::Hit);
    assert_eq!(
        (reverted.image, reverted.image_id),
        (original.image, original.image_id)
    );
    assert_eq!(recorder.steps().len(), steps_before);
}

#[tokio::test]
async fn a_broken_dockerfile_fails_with_the_steps_own_error() {
    let cleanup = ImageCleanup::default();
    let (builder, _) = builder().await;
    let name = unique_name("broken");
    let dir = copy_fixture("broken-dockerfile", &name);
    let target = target_in(&dir, &name);
    cleanup.add(builder.plan(&target).await.unwrap().image());

    let err = builder.ensure(&target, false).await.unwrap_err();
    let BuildError::Failed { failure, .. } = &err else {
        panic!("expected a build failure, got {err}")
    };
    // Step 2 of the skill's two, whatever the labels and the init add after them.
    let step = failure.step.as_deref().unwrap_or_default();
    assert!(
        step.starts_with("Step 2/") && step.ends_with(" : COPY does-not-exist.txt /x"),
        "{step}"
    );
    assert!(
        failure.message.contains("does-not-exist.txt"),
        "{}",
        failure.message
    );
    let text = err.to_string();
    assert!(
        text.starts_with(&format!(
            "{name}: the image build failed at {step}: COPY failed"
        )),
        "{text}"
    );
    // The author is told which file to fix.
    assert!(
        text.contains(&format!(
            "fix that step in {}",
            target.dir.join("Dockerfile").display()
        )),
        "{text}"
    );
}

#[tokio::test]
async fn a_failing_build_command_reports_its_status_and_output() {
    let (builder, _) = builder().await;
    let name = unique_name("cmd");
    let dir = copy_fixture("failing-command", &name);
    let err = builder
        .ensure(&target_in(&dir, &name), false)
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, BuildError::Command { .. }), "{text}");
    assert!(text.contains("exit status: 7"), "{text}");
    assert!(text.contains("error[E0425]: cannot find value"), "{text}");
    assert!(text.contains("compiling"), "{text}");
}

#[tokio::test]
async fn concurrent_requests_for_one_image_build_it_once() {
    let cleanup = ImageCleanup::default();
    let (builder, _) = builder().await;
    let name = unique_name("concurrent");
    let dir = copy_fixture("static-skill", &name);
    let target = target_in(&dir, &name);
    let (a, b) = tokio::join!(
        builder.ensure(&target, false),
        builder.ensure(&target, false)
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    cleanup.add(&a.image);
    let mut outcomes = [a.cache, b.cache];
    outcomes.sort_by_key(|o| *o == CacheOutcome::Hit);
    assert_eq!(outcomes, [CacheOutcome::Built, CacheOutcome::Hit]);
    assert_eq!(a.image_id, b.image_id);
}

#[tokio::test]
async fn a_rebuilt_base_image_changes_the_skill_hash() {
    let cleanup = ImageCleanup::default();
    let (builder, _) = builder().await;
    let base_name = unique_name("base");
    let base_dir = copy_fixture("static-skill", &base_name);
    let base = builder
        .ensure(&target_in(&base_dir, &base_name), false)
        .await
        .unwrap();
    cleanup.add(&base.image);

    let name = unique_name("onbase");
    let dir = copy_fixture("static-skill", &name);
    let skill_dir = dir.path().join(&name);
    std::fs::write(
        skill_dir.join("Dockerfile"),
        format!("FROM {}\nCOPY data.txt /mine.txt\n", base.image),
    )
    .unwrap();
    let first = builder
        .ensure(&target_in(&dir, &name), false)
        .await
        .unwrap();
    cleanup.add(&first.image);

    // Same tag, different image: as when `skillhost images build --force` remakes a base.
    std::fs::write(
        base_dir.path().join(&base_name).join("data.txt"),
        "rebuilt\n",
    )
    .unwrap();
    let rebuilt = builder
        .ensure(&target_in(&base_dir, &base_name), false)
        .await
        .unwrap();
    cleanup.add(&rebuilt.image);
    let (repo, _) = base.image.rsplit_once(':').unwrap();
    let (_, tag) = base.image.rsplit_once(':').unwrap();
    builder
        .engine()
        .tag_image(&rebuilt.image_id, repo, tag)
        .await
        .unwrap();

    let second = builder
        .ensure(&target_in(&dir, &name), false)
        .await
        .unwrap();
    cleanup.add(&second.image);
    assert_ne!(second.hash, first.hash);
    assert_eq!(second.cache, CacheOutcome::Built);
}

#[tokio::test]
async fn a_missing_base_image_is_named_with_its_line() {
    let (builder, _) = builder().await;
    let name = unique_name("nobase");
    let dir = copy_fixture("static-skill", &name);
    std::fs::write(
        dir.path().join(&name).join("Dockerfile"),
        "# base\nFROM skillhost/not-built-anywhere\n",
    )
    .unwrap();
    let err = builder
        .ensure(&target_in(&dir, &name), false)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("base image skillhost/not-built-anywhere:latest (Dockerfile line 2) is not on this engine"),
        "{err}"
    );
}

#[test]
fn an_unreachable_engine_is_exit_code_3_naming_the_socket() {
    let started = Instant::now();
    let out = skillhost()
        .args(["build", "echo"])
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("unix:///nonexistent.sock"), "{stderr}");
    assert!(out.stdout.is_empty());
    // The contract is an answer within 5 s, not a hang until some far-off timeout.
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}");
}

#[test]
fn a_deployment_that_cannot_be_met_fails_before_anything_builds() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("prod.yaml");
    std::fs::write(&manifest, "skills:\n  echo: \"^9\"\n  nosuch: \"*\"\n").unwrap();
    // No engine at all: the check must come first.
    let out = skillhost()
        .args(["build", "--manifest"])
        .arg(&manifest)
        .env("DOCKER_HOST", "unix:///nonexistent.sock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("echo is version 1.0.0, which does not meet ^9"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skill nosuch (*) was not found"),
        "{stderr}"
    );
}

#[test]
fn list_json_is_stable_across_runs_and_a_copy_elsewhere() {
    let copy = tempfile::tempdir().unwrap();
    common::copy_dir(
        &workspace_root().join("skills"),
        &copy.path().join("skills"),
    );
    // The echo skill's extra inputs live beside skills/; copy them too.
    for input in ["skill-sdk", "Cargo.toml", "Cargo.lock"] {
        let from = workspace_root().join(input);
        if from.is_dir() {
            common::copy_dir(&from, &copy.path().join(input));
        } else {
            std::fs::copy(&from, copy.path().join(input)).unwrap();
        }
    }
    let run = |dir: &std::path::Path| {
        let out = common::run_ok(&[
            "list",
            "--format",
            "json",
            "--skills-dir",
            dir.to_str().unwrap(),
        ]);
        String::from_utf8(out.stdout).unwrap()
    };
    let here = run(&workspace_root().join("skills"));
    assert_eq!(here, run(&workspace_root().join("skills")));
    assert_eq!(here, run(&copy.path().join("skills")));
    let parsed: serde_json::Value = serde_json::from_str(&here).unwrap();
    let echo = &parsed["skills"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "echo")
        .unwrap();
    assert_eq!(echo["hash"].as_str().unwrap().len(), 64);
}

#[test]
fn a_failed_build_is_the_skills_failure_from_build_and_from_invoke() {
    let name = unique_name("broken-cli");
    let dir = copy_fixture("broken-dockerfile", &name);
    let root = dir.path().to_str().unwrap();
    let build = skillhost()
        .args(["build", &name, "--skills-dir", root])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&build.stderr);
    assert_eq!(build.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("COPY does-not-exist.txt"), "{stderr}");

    let invoke = skillhost()
        .args([
            "invoke",
            &name,
            "read",
            "--skills-dir",
            root,
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert_eq!(
        invoke.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&invoke.stderr)
    );
    let result: serde_json::Value = serde_json::from_slice(&invoke.stdout).unwrap();
    assert_eq!(result["status"], "skill_error");
    assert_eq!(result["error"]["code"], "build_failed");
    assert!(
        result["error"]["message"]
            .as_str()
            .unwrap()
            .contains("COPY does-not-exist.txt"),
        "{result}"
    );
}
