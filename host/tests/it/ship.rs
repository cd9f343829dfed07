//! The production workflow against the real engine and a real registry (Debian's
//! `docker-registry` on 127.0.0.1): lock, push, remove the images as if on another host,
//! pull them back by digest, and run locked from the images alone; and every way it must
//! refuse: a digest the registry does not hold, an image that is not the locked one, an
//! unreachable registry, a swapped or missing image on a locked host.

// A scenario or a benchmark reads best top to bottom, as one function; the 100-line
// bound is for the library (Cargo.toml, [workspace.lints.clippy]).
#![allow(clippy::too_many_lines)]

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use common::registry::Registry;
use common::service::Daemon;
use common::{copy_fixture, ensure_base_images, skillhost, unique_name, ImageCleanup};
use hyper::{Method, StatusCode};
use skillhost::api::codes;
use skillhost::engine::Engine;
use skillhost::lock::LockFile;
use skillhost::{Host, HostConfig, Status};

/// A probe skill locked in a temporary directory.
struct Locked {
    dir: tempfile::TempDir,
    name: String,
    lock_path: PathBuf,
    lock: LockFile,
}

fn lock_probe(prefix: &str, cleanup: &ImageCleanup) -> Locked {
    lock_fixture("probe", prefix, cleanup)
}

/// A copy of the fixture `fixture`, locked in a temporary directory.
fn lock_fixture(fixture: &str, prefix: &str, cleanup: &ImageCleanup) -> Locked {
    ensure_base_images();
    let name = unique_name(prefix);
    let dir = copy_fixture(fixture, &name);
    let deployment = dir.path().join("deployment.yaml");
    std::fs::write(&deployment, format!("skills:\n  {name}: \"^0.1\"\n")).unwrap();
    let made = skillhost()
        .arg("--skills-dir")
        .arg(dir.path())
        .args(["lock", "--manifest"])
        .arg(&deployment)
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", stderr(&made));
    let lock_path = dir.path().join("deployment.lock");
    let lock = LockFile::load(&lock_path).unwrap();
    cleanup.add(lock.skills[0].image.clone());
    cleanup.add(lock.skills[0].image_id.clone());
    Locked {
        dir,
        name,
        lock_path,
        lock,
    }
}

/// A host that runs `lock` and nothing else.
fn locked_config(lock: &LockFile) -> HostConfig {
    HostConfig::new(vec![PathBuf::from("/nonexistent")]).locked(Some(lock.clone()))
}

/// `skillhost export --lock LOCK -o BUNDLE`, run from `cwd`.
fn export(cwd: &Path, lock: &Path, bundle: &Path) -> Output {
    let (lock, bundle) = (lock.to_str().unwrap(), bundle.to_str().unwrap());
    cli(cwd, &["export", "--lock", lock, "-o", bundle])
}

/// `skillhost push --lock LOCK --registry REGISTRY`, run from `cwd`; it must succeed.
fn push(cwd: &Path, lock: &str, registry: &Registry) {
    let pushed = cli(
        cwd,
        &["push", "--lock", lock, "--registry", &registry.address],
    );
    assert!(pushed.status.success(), "{}", stderr(&pushed));
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Run the CLI from `cwd`, where there are no skills to find.
fn cli(cwd: &Path, args: &[&str]) -> Output {
    skillhost().current_dir(cwd).args(args).output().unwrap()
}

async fn remove_image(engine: &Engine, reference: &str) {
    let options = bollard::query_parameters::RemoveImageOptions {
        force: true,
        ..Default::default()
    };
    skillhost::testing::docker(engine)
        .remove_image(reference, Some(options), None)
        .await
        .unwrap();
}

/// The names the engine has for images of `registry`: a push or pull leaves none.
async fn names_from(engine: &Engine, registry: &str) -> Vec<String> {
    let images = skillhost::testing::docker(engine)
        .list_images(None::<bollard::query_parameters::ListImagesOptions>)
        .await
        .unwrap();
    images
        .into_iter()
        .flat_map(|i| i.repo_tags.into_iter().chain(i.repo_digests))
        .filter(|name| name.starts_with(registry))
        .collect()
}

/// Containers of skill `name`.
async fn containers_of(engine: &Engine, name: &str) -> usize {
    let options = bollard::query_parameters::ListContainersOptions {
        all: true,
        filters: Some(std::collections::HashMap::from([(
            "label".to_string(),
            vec![format!("io.skillhost.skill={name}")],
        )])),
        ..Default::default()
    };
    skillhost::testing::docker(engine)
        .list_containers(Some(options))
        .await
        .unwrap()
        .len()
}

#[tokio::test]
async fn locked_images_go_through_a_registry_and_run_with_no_sources() {
    let cleanup = ImageCleanup::default();
    let registry = Registry::start();
    let Locked {
        dir,
        name,
        lock_path,
        lock,
    } = lock_probe("ship", &cleanup);
    let engine = Engine::connect().await.unwrap();
    let entry = lock.skills[0].clone();
    let empty = tempfile::tempdir().unwrap();
    let lock_arg = lock_path.to_str().unwrap();

    // Push: the digest is recorded in the lock, and the engine keeps no registry name.
    push(empty.path(), lock_arg, &registry);
    let after_push = LockFile::load(&lock_path).unwrap();
    let pushed_entry = after_push.get(&name).unwrap();
    assert_eq!(
        pushed_entry.registry.as_deref(),
        Some(registry.address.as_str())
    );
    let digest = pushed_entry.digest.clone().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    assert!(names_from(&engine, &registry.address).await.is_empty());

    // Another host: no image, no sources. `list --locked` says what is missing; the pull
    // (from the same registry named as a mirror) gives back the locked image ID.
    remove_image(&engine, &entry.image_id).await;
    std::fs::remove_dir_all(dir.path().join(&name)).unwrap();
    let listed = cli(
        empty.path(),
        &["--format", "json", "list", "--locked", lock_arg],
    );
    assert_eq!(listed.status.code(), Some(3), "{}", stderr(&listed));
    let report: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(report["skills"][0]["present"], false, "{report}");
    assert!(report["skills"][0]["problem"]
        .as_str()
        .unwrap()
        .contains("not present"));
    let pulled = cli(
        empty.path(),
        &["pull", "--lock", lock_arg, "--mirror", &registry.address],
    );
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let listed = cli(
        empty.path(),
        &["--format", "json", "list", "--locked", lock_arg],
    );
    assert!(listed.status.success(), "{}", stderr(&listed));
    let report: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(report["skills"][0]["name"], name.as_str());
    assert_eq!(report["skills"][0]["present"], true, "{report}");
    let actions = report["skills"][0]["actions"].as_array().unwrap();
    assert!(
        actions.iter().any(|a| a == "echo"),
        "read from the image: {report}"
    );
    let local = engine.inspect_image(&entry.image).await.unwrap().unwrap();
    assert_eq!(local.id, entry.image_id, "the pull gave the locked image");
    assert!(names_from(&engine, &registry.address).await.is_empty());
    let again = cli(empty.path(), &["pull", "--lock", lock_arg]);
    assert!(String::from_utf8_lossy(&again.stdout).contains("already present"));

    // Run locked, from the image alone.
    let ran = cli(
        empty.path(),
        &[
            "--format",
            "json",
            "invoke",
            "--locked",
            lock_arg,
            &name,
            "echo",
            "--args",
            r#"{"data": "from the lock"}"#,
        ],
    );
    assert!(ran.status.success(), "{}", stderr(&ran));
    let result: skillhost::InvocationResult = serde_json::from_slice(&ran.stdout).unwrap();
    assert_eq!(result.output.unwrap()["data"], "from the lock");
    assert_eq!(result.image.as_deref(), Some(entry.image_id.as_str()));

    // A digest the registry does not hold: refused, naming the skill and the registry.
    remove_image(&engine, &entry.image_id).await;
    let mut bogus = after_push.clone();
    bogus.skills[0].digest = Some(format!("sha256:{}", "0".repeat(64)));
    let bogus_path = empty.path().join("bogus.lock");
    bogus.save(&bogus_path).unwrap();
    let refused = cli(
        empty.path(),
        &["pull", "--lock", bogus_path.to_str().unwrap()],
    );
    assert_eq!(refused.status.code(), Some(3), "{}", stderr(&refused));
    let text = stderr(&refused);
    assert!(
        text.contains(&format!("the registry {} refused", registry.address))
            && text.contains(&format!("skill {name}")),
        "{text}"
    );
    assert!(engine.inspect_image(&entry.image).await.unwrap().is_none());

    // The registry's image under the digest is not the one the lock pins: nothing stays.
    let mut other_id = after_push.clone();
    other_id.skills[0].image_id = format!("sha256:{}", "f".repeat(64));
    let other_path = empty.path().join("other-id.lock");
    other_id.save(&other_path).unwrap();
    let mismatch = cli(
        empty.path(),
        &["pull", "--lock", other_path.to_str().unwrap()],
    );
    assert_eq!(mismatch.status.code(), Some(3), "{}", stderr(&mismatch));
    let text = stderr(&mismatch);
    assert!(
        text.contains(&format!("skill {name}")) && text.contains(&entry.image_id),
        "{text}"
    );
    assert!(engine.inspect_image(&entry.image).await.unwrap().is_none());
    assert!(names_from(&engine, &registry.address).await.is_empty());

    // A registry nobody listens on: named, after the retries.
    let pulled = cli(empty.path(), &["pull", "--lock", lock_arg]);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let unreachable = cli(
        empty.path(),
        &["push", "--lock", lock_arg, "--registry", "127.0.0.1:1"],
    );
    assert_eq!(unreachable.status.code(), Some(3));
    let text = stderr(&unreachable);
    assert!(
        text.contains("cannot reach the registry 127.0.0.1:1") && text.contains(&name),
        "{text}"
    );
    assert!(names_from(&engine, "127.0.0.1:1/").await.is_empty());
    assert_eq!(
        LockFile::load(&lock_path)
            .unwrap()
            .get(&name)
            .unwrap()
            .registry,
        Some(registry.address.clone()),
        "a failed push changes nothing in the lock"
    );
}

#[tokio::test]
async fn a_service_that_pulls_answers_host_starting_until_its_images_are_here() {
    let cleanup = ImageCleanup::default();
    let registry = Registry::start();
    let Locked {
        dir: _dir,
        name,
        lock_path,
        lock,
    } = lock_probe("starting", &cleanup);
    let engine = Engine::connect().await.unwrap();
    let entry = lock.skills[0].clone();
    let empty = tempfile::tempdir().unwrap();
    let lock_arg = lock_path.to_str().unwrap();
    push(empty.path(), lock_arg, &registry);
    remove_image(&engine, &entry.image_id).await;

    // The registry frozen, the pull waits; callers are answered meanwhile.
    registry.pause();
    let mut service = Daemon::spawn(empty.path(), &["--locked", lock_arg, "--pull"], &[]);
    service.await_socket();
    // The listeners answer before the engine is reached; the pull comes right after.
    let connecting = "starting: connecting to the engine";
    let started = std::time::Instant::now();
    let ready = loop {
        let ready = service.call(Method::GET, "/readyz", &[], None).await;
        if ready.json()["problems"][0] != connecting || started.elapsed() > Duration::from_secs(30)
        {
            break ready;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        ready.json()["problems"][0],
        format!("starting: pulling the locked images (1 of 1: {name})")
    );
    let early = service
        .invoke(
            &name,
            "echo",
            serde_json::json!({"args": {"data": "early"}}),
        )
        .await;
    assert_eq!(
        early.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        early.body
    );
    assert_eq!(early.headers["retry-after"], "1");
    assert_eq!(early.headers["connection"], "close");
    assert_eq!(early.json()["error"]["code"], "host_starting");
    let alive = service.call(Method::GET, "/healthz", &[], None).await;
    assert_eq!(alive.status, StatusCode::OK);
    let server = format!("unix:{}", service.socket.display());
    let not_ready = cli(empty.path(), &["ready", "--server", &server]);
    assert_eq!(not_ready.status.code(), Some(3), "{}", stderr(&not_ready));
    assert!(
        String::from_utf8_lossy(&not_ready.stdout).contains("starting: pulling"),
        "{}",
        String::from_utf8_lossy(&not_ready.stdout)
    );

    // Once the registry answers, the image is pulled and the same socket runs calls.
    registry.resume();
    service.await_listening();
    let call = service
        .invoke(
            &name,
            "echo",
            serde_json::json!({"args": {"data": "pulled"}}),
        )
        .await;
    assert_eq!(call.status, StatusCode::OK, "{}", call.body);
    assert_eq!(call.result().output.unwrap()["data"], "pulled");
    let ready = service.call(Method::GET, "/readyz", &[], None).await;
    assert_eq!(ready.status, StatusCode::OK, "{}", ready.body);
    service.signal("TERM");
    assert!(service.wait(Duration::from_secs(60)).success());

    // A stop signal while it starts ends it there, its socket removed.
    remove_image(&engine, &entry.image_id).await;
    registry.pause();
    let mut stopping = Daemon::spawn(empty.path(), &["--locked", lock_arg, "--pull"], &[]);
    stopping.await_socket();
    stopping.signal("TERM");
    let stopped = stopping.wait(Duration::from_secs(60));
    registry.resume();
    assert!(stopped.success(), "{stopped}");
    assert!(!stopping.socket.exists(), "the socket is removed");
}

#[tokio::test]
async fn a_locked_host_refuses_an_image_that_is_not_the_locked_one() {
    let cleanup = ImageCleanup::default();
    let Locked { name, lock, .. } = lock_probe("locked", &cleanup);
    let engine = Engine::connect().await.unwrap();
    let entry = lock.skills[0].clone();

    // The locked image runs, and the host is ready.
    let host = Host::new(locked_config(&lock)).await.unwrap();
    assert!(host.problems().await.is_empty());
    let ok = host
        .invoke(&name, "echo", serde_json::json!({"data": "x"}))
        .await;
    assert_eq!(ok.status, Status::Ok, "{ok:?}");

    // Another image swapped in under the locked tag: the running host reports it and
    // still runs the locked image (by ID); a host started now refuses the skill.
    let (repo, tag) = entry.image.split_once(':').unwrap();
    let impostor = engine
        .inspect_image("skillhost/python:latest")
        .await
        .unwrap()
        .unwrap();
    // Tagging moves the tag.
    engine.tag_image(&impostor.id, repo, tag).await.unwrap();
    let problems = host.problems().await;
    assert!(
        problems.len() == 1 && problems[0].contains(&impostor.id),
        "{problems:?}"
    );
    let still = host
        .invoke(&name, "echo", serde_json::json!({"data": "y"}))
        .await;
    assert_eq!(still.status, Status::Ok, "{still:?}");
    assert_eq!(still.image.as_deref(), Some(entry.image_id.as_str()));
    host.shutdown().await;

    let fresh = Host::new(locked_config(&lock)).await.unwrap();
    let refused = fresh
        .invoke(&name, "echo", serde_json::json!({"data": "z"}))
        .await;
    assert_eq!(refused.status, Status::InfrastructureError);
    let error = refused.error.unwrap();
    assert_eq!(error.code, codes::INTEGRITY_ERROR);
    assert!(
        error.message.contains(&format!("skill {name}"))
            && error.message.contains(&impostor.id)
            && error.message.contains(&entry.image_id),
        "{}",
        error.message
    );
    assert_eq!(
        containers_of(&engine, &name).await,
        0,
        "no container was made"
    );
    fresh.shutdown().await;

    // The CLI gives the same result, with the infrastructure exit code.
    let dir = tempfile::tempdir().unwrap();
    let lock_path = dir.path().join("l.lock");
    lock.save(&lock_path).unwrap();
    let out = cli(
        dir.path(),
        &[
            "--format",
            "json",
            "invoke",
            "--locked",
            lock_path.to_str().unwrap(),
            &name,
            "ok",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let result: skillhost::InvocationResult = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(result.error.unwrap().code, codes::INTEGRITY_ERROR);

    // So does the service, which starts but is not ready, naming the skill.
    let service = Daemon::start(dir.path(), &["--locked", lock_path.to_str().unwrap()]);
    let ready = service.call(Method::GET, "/readyz", &[], None).await;
    assert_eq!(
        ready.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        ready.body
    );
    assert!(
        ready.body.contains(&format!("skill {name}")) && ready.body.contains(&impostor.id),
        "{}",
        ready.body
    );
    let call = service.invoke(&name, "ok", serde_json::json!({})).await;
    assert_eq!(call.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(call.result().error.unwrap().code, codes::INTEGRITY_ERROR);
    drop(service);
    engine.tag_image(&entry.image_id, repo, tag).await.unwrap();

    // A lock naming an image the engine does not have.
    let mut missing = lock.clone();
    missing.skills[0].image = format!("skill-{name}:0000000000000000");
    let host = Host::new(locked_config(&missing)).await.unwrap();
    let problems = host.problems().await;
    assert!(
        problems.len() == 1 && problems[0].contains("is not present"),
        "{problems:?}"
    );
    let refused = host.invoke(&name, "ok", serde_json::json!({})).await;
    assert_eq!(refused.error.unwrap().code, codes::INTEGRITY_ERROR);
    host.shutdown().await;

    // Native mode needs sources, so a locked host refuses it at once.
    let native = Host::new(locked_config(&lock).allow_native(true))
        .await
        .unwrap_err();
    assert!(native.to_string().contains("native"), "{native}");
}

/// A bundle of `lock_text` and the images file `images`, with `extra` members (a raw
/// name, for paths the tar crate would not write) added first.
fn write_bundle(path: &Path, lock_text: &str, images: &Path, extra: &[(&[u8], &[u8])]) {
    let mut builder = tar::Builder::new(std::fs::File::create(path).unwrap());
    for (name, data) in extra {
        let mut header = tar::Header::new_old();
        header.as_old_mut().name[..name.len()].copy_from_slice(name);
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append(&header, *data).unwrap();
    }
    let mut header = tar::Header::new_gnu();
    header.set_size(lock_text.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "skillhost-bundle.lock", lock_text.as_bytes())
        .unwrap();
    builder.append_path_with_name(images, "images.tar").unwrap();
    builder.finish().unwrap();
}

#[tokio::test]
async fn a_bundle_carries_the_locked_images_and_a_damaged_one_imports_nothing() {
    let cleanup = ImageCleanup::default();
    let Locked {
        dir: _sources,
        name,
        lock_path,
        lock,
    } = lock_probe("bundle", &cleanup);
    let engine = Engine::connect().await.unwrap();
    let entry = lock.skills[0].clone();
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle.tar");
    let bundle_arg = bundle.to_str().unwrap();

    let exported = export(work.path(), &lock_path, &bundle);
    assert!(exported.status.success(), "{}", stderr(&exported));
    let size = std::fs::metadata(&bundle).unwrap().len();
    assert!(size > 1_000_000, "a bundle of the probe is {size} bytes");

    // Another host: the image is gone; the import gives it back and writes the lock.
    remove_image(&engine, &entry.image_id).await;
    let lock_out = work.path().join("imported.lock");
    let imported = cli(
        work.path(),
        &[
            "import",
            bundle_arg,
            "--lock-out",
            lock_out.to_str().unwrap(),
        ],
    );
    assert!(imported.status.success(), "{}", stderr(&imported));
    let local = engine.inspect_image(&entry.image).await.unwrap().unwrap();
    assert_eq!(local.id, entry.image_id);
    assert_eq!(LockFile::load(&lock_out).unwrap(), lock);

    // The bundle's images, for the damaged bundles below.
    let images = work.path().join("images.tar");
    let mut outer = tar::Archive::new(std::fs::File::open(&bundle).unwrap());
    for member in outer.entries().unwrap() {
        let mut member = member.unwrap();
        if member.path().unwrap().to_str() == Some("images.tar") {
            std::io::copy(&mut member, &mut std::fs::File::create(&images).unwrap()).unwrap();
        }
    }
    remove_image(&engine, &entry.image_id).await;
    let refused = |path: &Path, wanted: &str| {
        let out = cli(work.path(), &["import", path.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let text = stderr(&out);
        assert!(
            text.contains(wanted) && text.contains("nothing was imported"),
            "{text}"
        );
    };

    // Truncated.
    let truncated = work.path().join("truncated.tar");
    let bytes = std::fs::read(&bundle).unwrap();
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    refused(&truncated, "damaged or truncated");

    // A path outside the bundle's root.
    let slip = work.path().join("slip.tar");
    write_bundle(&slip, &lock.render(), &images, &[(b"../escaped", b"x")]);
    refused(&slip, "\"../escaped\", a path outside its root");
    assert!(!work.path().parent().unwrap().join("escaped").exists());

    // A lock that pins another image ID than the bundle carries.
    let mut other = lock.clone();
    other.skills[0].image_id = format!("sha256:{}", "e".repeat(64));
    let wrong = work.path().join("wrong-id.tar");
    write_bundle(&wrong, &other.render(), &images, &[]);
    refused(
        &wrong,
        &format!("skill {name}: the bundle's {}", entry.image),
    );

    assert!(
        engine.inspect_image(&entry.image).await.unwrap().is_none(),
        "no refused bundle imported anything"
    );
}

/// A lock of a skill with an egress allowlist pins the proxy's image too; a bundle
/// carries it and an import restores it; a locked host runs its proxy from the locked
/// image, and refuses the skill when the lock pins none.
#[tokio::test]
async fn an_allowlisted_skills_lock_pins_its_egress_proxy_and_a_bundle_carries_it() {
    let cleanup = ImageCleanup::default();
    let Locked {
        dir: _sources,
        name,
        lock_path,
        lock,
    } = lock_fixture("egress", "lockegress", &cleanup);
    let engine = Engine::connect().await.unwrap();
    let proxy = lock
        .egress_proxy
        .clone()
        .expect("the lock pins the egress proxy");
    let latest = engine
        .inspect_image("skillhost/egress-proxy:latest")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(proxy.image_id, latest.id);
    assert!(
        proxy.image.starts_with("skillhost/egress-proxy:"),
        "{proxy:?}"
    );
    assert_ne!(proxy.image, "skillhost/egress-proxy:latest");

    // Exported with the skill; an engine without the proxy's tag gets it back.
    let work = tempfile::tempdir().unwrap();
    let bundle = work.path().join("bundle.tar");
    let exported = export(work.path(), &lock_path, &bundle);
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert!(
        String::from_utf8_lossy(&exported.stdout).contains("2 images"),
        "{}",
        String::from_utf8_lossy(&exported.stdout)
    );
    // `latest` keeps the image itself: only the locked tag goes.
    engine.untag(&proxy.image).await.unwrap();
    let imported = cli(work.path(), &["import", bundle.to_str().unwrap()]);
    assert!(imported.status.success(), "{}", stderr(&imported));
    let restored = engine.inspect_image(&proxy.image).await.unwrap().unwrap();
    assert_eq!(restored.id, proxy.image_id);

    // And through a registry: the push records the proxy's digest in the lock, and a pull
    // gives an engine without its locked tag the same image back.
    let registry = Registry::start();
    let lock_arg = lock_path.to_str().unwrap();
    push(work.path(), lock_arg, &registry);
    let pinned = LockFile::load(&lock_path).unwrap().egress_proxy.unwrap();
    assert_eq!(pinned.registry.as_deref(), Some(registry.address.as_str()));
    let digest = pinned.digest.unwrap_or_default();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
    engine.untag(&proxy.image).await.unwrap();
    let pulled = cli(work.path(), &["pull", "--lock", lock_arg]);
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let restored = engine.inspect_image(&proxy.image).await.unwrap().unwrap();
    assert_eq!(restored.id, proxy.image_id);
    assert!(names_from(&engine, &registry.address).await.is_empty());

    // A locked host's proxy runs the locked image.
    let host = Host::new(locked_config(&lock)).await.unwrap();
    assert!(host.problems().await.is_empty());
    let ran = host
        .invoke(&name, "probe", serde_json::json!({"checks": []}))
        .await;
    assert_eq!(ran.status, Status::Ok, "{ran:?}");
    let options = bollard::query_parameters::ListContainersOptions {
        filters: Some(std::collections::HashMap::from([(
            "label".to_string(),
            vec!["io.skillhost.egress".to_string()],
        )])),
        ..Default::default()
    };
    let proxies = skillhost::testing::docker(&engine)
        .list_containers(Some(options))
        .await
        .unwrap();
    assert!(
        proxies
            .iter()
            .any(|c| c.image_id.as_deref() == Some(proxy.image_id.as_str())),
        "{proxies:?}"
    );
    host.shutdown().await;

    // A lock that pins no proxy (written before skillhost pinned one) runs no egress.
    let mut unpinned = lock.clone();
    unpinned.egress_proxy = None;
    let host = Host::new(locked_config(&unpinned)).await.unwrap();
    let refused = host
        .invoke(&name, "probe", serde_json::json!({"checks": []}))
        .await;
    let error = refused.error.clone().unwrap();
    assert_eq!(error.code, codes::INTEGRITY_ERROR, "{refused:?}");
    assert!(
        error.message.contains("pins no egress proxy"),
        "{}",
        error.message
    );
    host.shutdown().await;
    assert_eq!(containers_of(&engine, &name).await, 0);
}
