//! `run.network: {egress: [...]}` against the real engine, with no internet: two upstream
//! servers in containers on a network of the test's own, named by aliases, and a skill
//! that tries every way out at once. Only the allowlisted names and ports answer, through
//! the proxy; nothing else is reachable, not even by name, on every path.

use crate::common;

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig as DockerHostConfig, NetworkCreateRequest,
    NetworkingConfig,
};
use bollard::query_parameters::{CreateContainerOptions, ListNetworksOptions};
use bollard::Docker;
use serde_json::{json, Value};
use skillhost::testing::on_engine_thread;
use skillhost::{Host, HostConfig, InvocationPath, InvokeOptions, Status};

use common::probe::assert_status;
use common::{copy_fixture, ensure_base_images, unique_name, ImageCleanup};

/// A server answering every GET with its name.
const SERVER: &str = r#"
import http.server, os
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = os.environ["NAME"].encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.ThreadingHTTPServer(("0.0.0.0", 8080), Handler).serve_forever()
"#;

/// The test's network and its two servers, removed when dropped, even by a failing test.
struct Upstreams {
    network: String,
    containers: Vec<String>,
    /// The allowed server's address, for a connection that ignores the proxy.
    allowed_ip: String,
    /// The test network's gateway: the host, as the upstreams see it.
    gateway: String,
}

impl Upstreams {
    async fn start(docker: &Docker) -> Upstreams {
        let network = unique_name("egress-upstreams");
        let mut upstreams = Upstreams {
            network: network.clone(),
            containers: Vec::new(),
            allowed_ip: String::new(),
            gateway: String::new(),
        };
        docker
            .create_network(NetworkCreateRequest {
                name: network.clone(),
                driver: Some("bridge".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let servers = [
            (
                "allowed",
                vec!["allowed.test", "api.wild.test", "wild.test"],
            ),
            (
                "denied",
                vec!["denied.test", "allowed.test.evil", "evilallowed.test"],
            ),
        ];
        for (server, aliases) in servers {
            let name = format!("{network}-{server}");
            upstreams.containers.push(name.clone());
            let endpoint = EndpointSettings {
                aliases: Some(aliases.iter().map(ToString::to_string).collect()),
                ..Default::default()
            };
            let body = ContainerCreateBody {
                image: Some("skillhost/python:latest".into()),
                cmd: Some(vec!["python3".into(), "-c".into(), SERVER.into()]),
                env: Some(vec![format!("NAME={server}")]),
                host_config: Some(DockerHostConfig {
                    network_mode: Some(network.clone()),
                    ..Default::default()
                }),
                networking_config: Some(NetworkingConfig {
                    endpoints_config: Some(HashMap::from([(network.clone(), endpoint)])),
                }),
                ..Default::default()
            };
            let options = CreateContainerOptions {
                name: Some(name.clone()),
                ..Default::default()
            };
            docker.create_container(Some(options), body).await.unwrap();
            docker
                .start_container(
                    &name,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
                .unwrap();
        }
        let allowed = docker
            .inspect_container(&upstreams.containers[0], None)
            .await
            .unwrap();
        upstreams.allowed_ip = allowed.network_settings.unwrap().networks.unwrap()[&network]
            .ip_address
            .clone()
            .unwrap();
        let inspected = docker.inspect_network(&network, None).await.unwrap();
        upstreams.gateway = inspected.ipam.unwrap().config.unwrap()[0]
            .gateway
            .clone()
            .unwrap();
        upstreams
    }
}

impl Drop for Upstreams {
    fn drop(&mut self) {
        let containers = std::mem::take(&mut self.containers);
        let network = self.network.clone();
        on_engine_thread(move |docker| async move {
            for name in containers {
                let options = bollard::query_parameters::RemoveContainerOptions {
                    force: true,
                    ..Default::default()
                };
                let _ = docker.remove_container(&name, Some(options)).await;
            }
            let _ = docker.remove_network(&network).await;
        });
    }
}

/// A host over a copy of the egress fixture, its proxies going out through `outbound`;
/// `run` replaces the fixture's run: header line to add keys (mode, prewarm).
async fn egress_host(
    outbound: &str,
    run: &str,
    cleanup: &ImageCleanup,
) -> (Host, String, tempfile::TempDir) {
    let name = unique_name("egress");
    let dir = copy_fixture("egress", &name);
    let manifest = dir.path().join(&name).join("skill.yaml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, text.replace("run:\n", run)).unwrap();
    let host = Host::new(
        HostConfig::new(vec![dir.path().to_path_buf()]).egress_network(outbound.to_string()),
    )
    .await
    .unwrap();
    if let Ok(state) = host.image_state(&name).await {
        cleanup.add(state.image);
    }
    (host, name, dir)
}

fn check(kind: &str, target: &str) -> Value {
    json!({"kind": kind, "target": target})
}

/// Every way out the test tries, with what it must give: `Some(body)` for an answer
/// from that server, `None` for a failure the skill can see.
fn checks(upstreams: &Upstreams) -> Vec<(Value, Option<&'static str>)> {
    vec![
        // The allowlist, by plain HTTP and by CONNECT.
        (check("http", "http://allowed.test:8080/"), Some("allowed")),
        (check("connect", "allowed.test:8080"), Some("allowed")),
        // A wildcard admits the names under it, not the name itself.
        (check("http", "http://api.wild.test:8080/"), Some("allowed")),
        (check("http", "http://wild.test:8080/"), None),
        // Other names, look-alikes, other ports: refused by the proxy.
        (check("http", "http://denied.test:8080/"), None),
        (check("connect", "denied.test:8080"), None),
        (check("http", "http://allowed.test.evil:8080/"), None),
        (check("connect", "evilallowed.test:8080"), None),
        (check("connect", "allowed.test:8081"), None),
        (
            check("http", "http://169.254.169.254/latest/meta-data/"),
            None,
        ),
        // Around the proxy: no route to anything.
        (
            check("tcp", &format!("{}:8080", upstreams.allowed_ip)),
            None,
        ),
        (check("tcp", &format!("{}:8080", upstreams.gateway)), None),
        (check("tcp", "169.254.169.254:80"), None),
        (check("tcp", "172.17.0.1:2375"), None),
        // No name resolves: not the upstreams', not the outside world's.
        (check("dns", "allowed.test"), None),
        (check("dns", "deb.debian.org"), None),
    ]
}

/// Run the probe and hold every outcome to its promise; the path it took and the
/// hostname it saw.
async fn probe_keeps_to_the_allowlist(
    host: &Host,
    name: &str,
    upstreams: &Upstreams,
) -> (InvocationPath, String) {
    let checks = checks(upstreams);
    let args = json!({"checks": checks.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>()});
    let result = host
        .invoke_with(name, "probe", args, InvokeOptions::default())
        .await;
    assert_status(&result, Status::Ok);
    // The result says what the skill could reach.
    let allowed = &result.egress.as_ref().unwrap().allowed;
    assert_eq!(allowed, &["allowed.test:8080", "*.wild.test:8080"]);
    let output = result.output.clone().unwrap();
    let outcomes = output["results"].as_array().unwrap();
    for ((check, promise), outcome) in checks.iter().zip(outcomes) {
        match promise {
            Some(body) => {
                assert_eq!(outcome["ok"], true, "{check} should pass: {outcome}");
                assert_eq!(outcome["body"], *body, "{check}: {outcome}");
            }
            None => assert_eq!(outcome["ok"], false, "{check} should fail: {outcome}"),
        }
    }
    // The proxy's refusals reach the skill as such: a 403, not a hang.
    let denied = &outcomes[4];
    assert_eq!(denied["status"], 403, "{denied}");
    // And the result says what was refused, this call's requests alone: a warm
    // worker's second call counts only its own.
    let denied: Vec<(String, u64)> = result
        .egress
        .as_ref()
        .unwrap()
        .denied
        .iter()
        .map(|d| (d.destination.clone(), d.count))
        .collect();
    let expected = [
        ("169.254.169.254:80", 1),
        ("allowed.test.evil:8080", 1),
        ("allowed.test:8081", 1),
        ("denied.test:8080", 2),
        ("evilallowed.test:8080", 1),
        ("wild.test:8080", 1),
    ];
    let expected: Vec<(String, u64)> = expected.iter().map(|(d, c)| (d.to_string(), *c)).collect();
    assert_eq!(denied, expected, "{:?}", result.egress);
    let proxy = output["proxy_env"]["HTTPS_PROXY"].as_str().unwrap();
    assert!(
        proxy.starts_with("http://") && proxy.ends_with(":8888"),
        "{proxy}"
    );
    let hostname = output["hostname"].as_str().unwrap().to_string();
    (result.path, hostname)
}

/// The IDs of this process's running network holders, once there are `count`.
async fn holders_running(docker: &Docker, count: usize) -> Vec<String> {
    let ours = format!(
        "io.skillhost.instance={}",
        skillhost::testing::instance_id()
    );
    let mut ids = Vec::new();
    for _ in 0..600 {
        let options = bollard::query_parameters::ListContainersOptions {
            filters: Some(HashMap::from([(
                "label".to_string(),
                vec![ours.clone(), "io.skillhost.holds".to_string()],
            )])),
            ..Default::default()
        };
        ids = docker
            .list_containers(Some(options))
            .await
            .unwrap()
            .into_iter()
            .filter_map(|c| c.id)
            .collect();
        if ids.len() >= count {
            return ids;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{count} network holders never ran; there are {ids:?}");
}

#[tokio::test]
async fn only_the_allowlist_is_reachable_on_every_path() {
    ensure_base_images();
    let docker = Docker::connect_with_defaults().unwrap();
    let upstreams = Upstreams::start(&docker).await;
    let cleanup = ImageCleanup::default();

    let (host, name, _dir) = egress_host(&upstreams.network, "run:\n", &cleanup).await;
    let (path, first) = probe_keeps_to_the_allowlist(&host, &name, &upstreams).await;
    assert_eq!(path, InvocationPath::Cold);
    // The first call made holders ahead for the next; that one joins one of them, and
    // no call joins a namespace another has used.
    let holders = holders_running(&docker, 2).await;
    let (path, second) = probe_keeps_to_the_allowlist(&host, &name, &upstreams).await;
    assert_eq!(path, InvocationPath::Cold);
    assert!(
        holders.iter().any(|id| id.starts_with(&second)),
        "{second} is not one of the holders {holders:?}"
    );
    assert_ne!(first, second);
    host.shutdown().await;
    let left = holders_running(&docker, 0).await;
    assert!(left.is_empty(), "holders left behind: {left:?}");

    let (host, name, _dir) =
        egress_host(&upstreams.network, "run:\n  prewarm: 1\n", &cleanup).await;
    host.prewarm(&name).await.unwrap();
    for _ in 0..200 {
        if host.prewarmed_ready(&name) > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (path, _) = probe_keeps_to_the_allowlist(&host, &name, &upstreams).await;
    assert_eq!(path, InvocationPath::Prewarmed);
    host.shutdown().await;

    let (host, name, _dir) =
        egress_host(&upstreams.network, "run:\n  mode: serve\n", &cleanup).await;
    for _ in 0..2 {
        let (path, _) = probe_keeps_to_the_allowlist(&host, &name, &upstreams).await;
        assert_eq!(path, InvocationPath::Warm);
    }
    host.shutdown().await;

    assert_no_gateway_left(&docker).await;
}

/// Every egress network on the engine: `(name, instance)`.
async fn egress_networks(docker: &Docker) -> Vec<(String, String)> {
    let options = ListNetworksOptions {
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec!["io.skillhost.egress".to_string()],
        )])),
    };
    docker
        .list_networks(Some(options))
        .await
        .unwrap()
        .into_iter()
        .filter_map(|n| {
            let instance = n.labels?.get("io.skillhost.instance")?.clone();
            Some((n.name?, instance))
        })
        .collect()
}

/// No egress proxy or network of this test process is left.
async fn assert_no_gateway_left(docker: &Docker) {
    let ours = skillhost::testing::instance_id();
    let left: Vec<_> = egress_networks(docker)
        .await
        .into_iter()
        .filter(|(_, instance)| *instance == ours)
        .collect();
    assert!(left.is_empty(), "egress networks left behind: {left:?}");
}

/// Egress networks of host processes other than this one: `(name, instance)`.
async fn others_networks(docker: &Docker) -> Vec<(String, String)> {
    let ours = skillhost::testing::instance_id();
    egress_networks(docker)
        .await
        .into_iter()
        .filter(|(_, instance)| *instance != ours)
        .collect()
}

/// Containers carrying `label` (`key=value`): running ones, or every one with `all`.
async fn containers_labelled(
    docker: &Docker,
    label: &str,
    all: bool,
) -> Vec<bollard::models::ContainerSummary> {
    let options = bollard::query_parameters::ListContainersOptions {
        all,
        filters: Some(HashMap::from([(
            "label".to_string(),
            vec![label.to_string()],
        )])),
        ..Default::default()
    };
    docker.list_containers(Some(options)).await.unwrap()
}

#[tokio::test]
async fn a_killed_hosts_proxy_and_network_are_removed_by_the_next_host() {
    ensure_base_images();
    let docker = Docker::connect_with_defaults().unwrap();
    let cleanup = ImageCleanup::default();
    let name = unique_name("egress-crash");
    let dir = copy_fixture("egress", &name);
    let listed = common::skillhost()
        .arg("--skills-dir")
        .arg(dir.path())
        .args(["list", "--format", "json"])
        .output()
        .unwrap();
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    cleanup.add(listed["skills"][0]["image"].as_str().unwrap());

    let mut child = common::skillhost()
        .arg("--skills-dir")
        .arg(dir.path())
        .args(["invoke", &name, "sleep", "--args", r#"{"seconds": 60}"#])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Its gateway exists, and its skill's container runs on it.
    let mut made = Vec::new();
    for _ in 0..600 {
        made = others_networks(&docker).await;
        let running =
            containers_labelled(&docker, &format!("io.skillhost.skill={name}"), false).await;
        if !made.is_empty() && !running.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!made.is_empty(), "the invoke made no egress network");
    child.kill().unwrap();
    child.wait().unwrap();

    // A host that starts later finds the dead process's proxy and network, and removes
    // them with its container.
    let empty = tempfile::tempdir().unwrap();
    let host = Host::new(HostConfig::new(vec![empty.path().to_path_buf()]))
        .await
        .unwrap();
    host.shutdown().await;
    let left = others_networks(&docker).await;
    for (network, instance) in &made {
        assert!(
            !left.iter().any(|(n, _)| n == network),
            "{network} of the killed {instance} is still there"
        );
        let proxies =
            containers_labelled(&docker, &format!("io.skillhost.instance={instance}"), true).await;
        assert!(
            proxies.is_empty(),
            "containers of {instance} left: {proxies:?}"
        );
    }
}
