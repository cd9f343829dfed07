//! The cache-hit check against a `docker build` of the same unchanged context.
//!
//! Both sides start from files on disk. skillhost reads and hashes the context and asks
//! the engine whether the tag exists; the docker side sends the same context to the
//! engine's builder, which answers from its layer cache.

use std::time::{Duration, Instant};

use skillhost::build::{CacheOutcome, ImageBuilder, ImageTarget};
use skillhost::catalog::Catalog;
use skillhost::engine::{BuildRequest, Engine};
use skillhost::testing::Context;

/// (cache-hit checks, docker builds), `rounds` each.
pub async fn measure(rounds: usize) -> (Vec<Duration>, Vec<Duration>) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let catalog = Catalog::discover(&[root.join("skills")]).expect("skills/");
    let target = ImageTarget::for_skill(catalog.get("echo").expect("skills/echo"));
    let engine = Engine::connect().await.expect("a Docker Engine");
    let builder = ImageBuilder::new(engine.clone(), std::sync::Arc::new(|_, _| {}));
    let warm = builder.ensure(&target, false).await.expect("echo builds");
    assert!(matches!(
        warm.cache,
        CacheOutcome::Hit | CacheOutcome::Built
    ));

    let mut hits = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let report = builder.ensure(&target, false).await.unwrap();
        hits.push(started.elapsed());
        assert_eq!(report.cache, CacheOutcome::Hit);
    }

    // The docker side does what `docker build` does: read the context from disk, tar it,
    // send it. It builds the same Dockerfile with the same labels under a tag of its own.
    let plan = builder.plan(&target).await.unwrap();
    let request = BuildRequest {
        tag: "skillhost-bench/echo:docker-build",
        dockerfile: "Dockerfile",
        args: Default::default(),
        labels: plan.labels(),
    };
    let mut builds = Vec::new();
    for _ in 0..rounds {
        let started = Instant::now();
        let mut context = Context::read_dir(&target.dir, &["Dockerfile", ".dockerignore"]).unwrap();
        for (dest, src) in &target.outputs {
            context.stage(
                &dest.to_string_lossy(),
                std::fs::read(target.dir.join(src)).unwrap(),
                0o755,
            );
        }
        engine
            .build_image(context.to_tar().unwrap(), &request, &mut |_| {})
            .await
            .unwrap()
            .unwrap();
        builds.push(started.elapsed());
    }
    let _ = skillhost::testing::docker(&engine)
        .remove_image(
            request.tag,
            None::<bollard::query_parameters::RemoveImageOptions>,
            None,
        )
        .await;

    (hits, builds)
}
