"""The Swarm deployment of deploy/swarm/, on this machine's real engine: `docker swarm
init` on one node, the registry and skillhost stacks deployed from the repository's files,
calls from the Python client through the published port, a killed task, a drained node
and a rolling update. Run by `.ci/run` when the engine is in no swarm; it leaves the
engine as it found it (swarm left, stacks, networks, secrets, configs, volume and image
tags removed), even when a test fails.

    SKILLHOST_SWARM_TESTS=1 pytest -q -s deploy/swarm/tests
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, List, Optional

import pytest

from skillhost import Client, ServiceError, ServiceUnreachable, Unavailable

REPO = Path(__file__).resolve().parents[3]
BINARY = Path(os.environ.get("SKILLHOST_BIN", REPO / "target" / "debug" / "skillhost"))
STACK = f"skillhost-it{os.getpid()}"
REGISTRY_STACK = f"skillhost-registry-it{os.getpid()}"
SERVICE = f"{STACK}_skillhost"
BUNDLED = ["echo", "json-pointer", "python", "shell"]

pytestmark = pytest.mark.skipif(
    os.environ.get("SKILLHOST_SWARM_TESTS") != "1",
    reason="set SKILLHOST_SWARM_TESTS=1: these tests put the engine in swarm mode",
)


def report(line: str) -> None:
    """A figure for the run's log (run pytest with -s to see it)."""
    print(f"swarm: {line}", file=sys.stderr, flush=True)


def run(*args: str, check: bool = True, env: Optional[dict] = None) -> str:
    done = subprocess.run(
        list(args), capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}):\n{done.stderr}")
    return done.stdout


def skillhost(*args: str) -> str:
    return run(str(BINARY), *args)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_address() -> str:
    """This machine's own address on its default route, where callers from elsewhere (a
    load balancer) reach a port published in host mode. Not 127.0.0.1: there Docker's
    userland proxy accepts a connection while the task's container starts and then
    resets it after the request was sent, so a call that never ran looks as if it may
    have; through the node's address the connection is refused before anything is
    sent."""
    route = subprocess.run(["ip", "-4", "route", "get", "1.1.1.1"], capture_output=True,
                           text=True, check=False).stdout.split()
    return route[route.index("src") + 1] if "src" in route else "127.0.0.1"


def wait_for(what: str, check: Callable[[], bool], within: float = 180.0) -> float:
    """Poll `check` until it holds; the seconds it took. Fails naming `what`."""
    started = time.monotonic()
    while time.monotonic() - started < within:
        if check():
            return time.monotonic() - started
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {within:.0f} s")


def ready(server: str) -> bool:
    try:
        with Client(server, timeout=3, retries=0) as client:
            return client.ready()[0]
    except ServiceUnreachable:
        return False


def cluster_status(*flags: str, token: Optional[str] = None) -> dict:
    """`skillhost cluster status` of the stack's service, and its exit code."""
    env = {**os.environ, "SKILLHOST_TOKEN": token or ""}
    done = subprocess.run([str(BINARY), "--format", "json", "cluster", "status", "--service",
                           SERVICE, *flags], capture_output=True, text=True, env=env)
    assert done.returncode in (0, 3), done.stderr
    status = json.loads(done.stdout)
    status["exit_code"] = done.returncode
    return status


def node_report(node_id: str) -> dict:
    return next(n for n in cluster_status()["nodes"] if n["id"] == node_id)


class SecondEngine:
    """A second Docker Engine on this machine, joined as a Swarm worker: its own network
    namespace (a veth pair to this one), its own mount and UTS namespaces (so its
    /var/run/docker.sock is its own, and its node a hostname of its own), data root and
    containerd. Its 127.0.0.1:REGISTRY_PORT is forwarded to the manager's registry, as
    the routing mesh would."""

    MANAGER = "10.231.0.1"
    WORKER = "10.231.0.2"

    def __init__(self, work: Path) -> None:
        self.netns = f"skillhost-it{os.getpid()}"
        self.veth = f"skh{os.getpid() % 100000}"
        self.dir = work / "worker"
        self.socket = self.dir / "docker.sock"
        self.processes: List[subprocess.Popen] = []
        self.made_network = False
        self.reason = ""

    def make_network(self) -> bool:
        """The namespace and the veth pair, before the swarm exists (the manager must
        advertise an address the worker reaches); False, with the reason, where this
        machine does not allow it."""
        if any(self.MANAGER in line for line in run("ip", "-4", "addr", check=False).splitlines()):
            self.reason = f"{self.MANAGER} is in use on this machine"
            return False
        steps = [
            ["ip", "netns", "add", self.netns],
            ["ip", "link", "add", f"{self.veth}h", "type", "veth", "peer", "name", f"{self.veth}n"],
            ["ip", "link", "set", f"{self.veth}n", "netns", self.netns],
            ["ip", "addr", "add", f"{self.MANAGER}/24", "dev", f"{self.veth}h"],
            ["ip", "link", "set", f"{self.veth}h", "up"],
            ["ip", "-n", self.netns, "addr", "add", f"{self.WORKER}/24", "dev", f"{self.veth}n"],
            ["ip", "-n", self.netns, "link", "set", f"{self.veth}n", "up"],
            ["ip", "-n", self.netns, "link", "set", "lo", "up"],
        ]
        for step in steps:
            done = subprocess.run(step, capture_output=True, text=True)
            if done.returncode != 0:
                self.reason = f"{' '.join(step)}: {done.stderr.strip()}"
                self.remove_network()
                return False
            self.made_network = True
        return True

    def docker(self, *args: str, check: bool = True) -> str:
        return run("docker", "-H", f"unix://{self.socket}", *args, check=check)

    def start(self, registry_port: int) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "daemon.json").write_text(json.dumps({
            "data-root": str(self.dir / "data"), "exec-root": "/run/docker",
            "pidfile": "/run/docker.pid", "cgroup-parent": self.netns,
            "storage-driver": run("docker", "info", "--format", "{{.Driver}}").strip(),
        }))
        # nsenter rather than `ip netns exec`, which remounts /sys and hides the cgroups.
        script = (f"mount -t tmpfs tmpfs /run && echo {self.netns} >/proc/sys/kernel/hostname"
                  " && exec dockerd "
                  f"--config-file {self.dir / 'daemon.json'} -H unix:///run/docker.sock "
                  f"-H unix://{self.socket}")
        log = open(self.dir / "dockerd.log", "w")
        self.processes.append(subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", "unshare", "--mount", "--uts",
             "--propagation", "private", "sh", "-c", script], stdout=log, stderr=log))
        wait_for("the second engine to answer", lambda: subprocess.run(
            ["docker", "-H", f"unix://{self.socket}", "info"], capture_output=True).returncode == 0,
            within=60)
        self.processes.append(subprocess.Popen(
            ["nsenter", f"--net=/run/netns/{self.netns}", "socat",
             f"TCP-LISTEN:{registry_port},bind=127.0.0.1,fork,reuseaddr",
             f"TCP:{self.MANAGER}:{registry_port}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def containers(self, skill: str) -> List[str]:
        return self.docker("ps", "-aq", "--filter", f"label=io.skillhost.skill={skill}").split()

    def stop(self) -> None:
        if self.processes:
            self.docker("swarm", "leave", "--force", check=False)
        for process in reversed(self.processes):
            process.terminate()
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        self.remove_network()
        run("rm", "-rf", str(self.dir), check=False)

    def remove_network(self) -> None:
        if not self.made_network:
            run("ip", "netns", "del", self.netns, check=False)
            return
        run("ip", "netns", "del", self.netns, check=False)
        # The pair goes when the namespace is freed, a moment after its last process.
        wait_for("the veth pair to go", lambda: subprocess.run(
            ["ip", "link", "show", f"{self.veth}h"], capture_output=True).returncode != 0,
            within=30)
        self.made_network = False


def task_containers() -> List[str]:
    return run("docker", "ps", "-q", "--filter", f"label=com.docker.swarm.service.name={SERVICE}").split()


@dataclass
class Cluster:
    """The deployed stacks and what the tests need to reach them."""

    server: str
    token: str
    env: dict
    work: Path
    node: str
    publish_mode: str
    registry_port: int
    second: Optional[SecondEngine]
    tags: List[str] = field(default_factory=list)

    def client(self) -> Client:
        # No retries of the client's own: the tests count every refusal themselves.
        return Client(self.server, token=self.token, timeout=60, retries=0)


def deploy_registry(port: int, mode: str) -> None:
    run("docker", "stack", "deploy", "--detach=true", "-c", str(REPO / "deploy/swarm/registry.yml"),
        REGISTRY_STACK, env={"SKILLHOST_REGISTRY_PORT": str(port), "SKILLHOST_PUBLISH_MODE": mode})


def registry_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /v2/ HTTP/1.0\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.")
    except OSError:
        return False


def registry_task_healthy() -> bool:
    names = run("docker", "ps", "--filter", f"label=com.docker.stack.namespace={REGISTRY_STACK}",
                "--format", "{{.Status}}")
    return "(healthy)" in names


def network_removed(name: str) -> bool:
    """Whether network `name` is gone; when it is not, one more try at removing it."""
    if name not in run("docker", "network", "ls", "--format", "{{.Name}}").split():
        return True
    run("docker", "network", "rm", name, check=False)
    return False


def stack_containers(stack: str) -> List[str]:
    return run("docker", "ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}",
               check=False).split()


def python_containers() -> List[str]:
    """Containers of the python skill on this (the manager's) engine."""
    return run("docker", "ps", "-aq", "--filter", "label=io.skillhost.managed=true",
               "--filter", "label=io.skillhost.skill=python").split()


def leave_as_found(gwbridge_before: bool, work: Path, tags: List[str],
                   second: Optional[SecondEngine]) -> None:
    """Everything this module made goes, whatever state the tests left."""
    for stack in (STACK, REGISTRY_STACK):
        run("docker", "stack", "rm", stack, check=False)
    for stack in (STACK, REGISTRY_STACK):
        try:
            wait_for(f"the containers of stack {stack} to go",
                     lambda stack=stack: not stack_containers(stack), within=90)
        except AssertionError as e:
            report(str(e))
    # Containers of skills the killed or drained tasks made are reaped by their
    # successors; the last task removes its own at SIGTERM. Anything else is a failure
    # .ci/run reports, so none is removed here.
    wait_for("the stacks' networks to go", lambda: not [
        n for n in run("docker", "network", "ls", "--format", "{{.Name}}").split()
        if n.startswith((STACK, REGISTRY_STACK))], within=60)
    run("docker", "volume", "rm", f"{REGISTRY_STACK}_registry-data", check=False)
    if second is not None:
        second.stop()
    run("docker", "swarm", "leave", "--force", check=False)
    if not gwbridge_before:
        run("docker", "network", "rm", "docker_gwbridge", check=False)
    for tag in tags:
        run("docker", "rmi", tag, check=False)
    run("rm", "-rf", str(work), check=False)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    state = run("docker", "info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    if state != "inactive":
        pytest.skip(f"the engine is in a swarm already ({state}); it is not ours to change")
    gwbridge_before = "docker_gwbridge" in run("docker", "network", "ls", "--format", "{{.Name}}").split()
    work = Path(tempfile.mkdtemp(prefix="skillhost-swarm-"))
    tags: List[str] = []
    second: Optional[SecondEngine] = SecondEngine(work)
    try:
        # With a second engine's network ready, the manager advertises its side of it.
        advertise = "127.0.0.1"
        if second.make_network():
            advertise = SecondEngine.MANAGER
        else:
            report(f"no second engine: {second.reason}")
        run("docker", "swarm", "init", "--advertise-addr", advertise)
        node = run("docker", "node", "ls", "-q").split()[0]

        # The images: the base images, then skillhost's own and the registry's on them.
        skillhost("images", "build")
        built = json.loads(skillhost("--format", "json", "images", "build", "--images-dir",
                                     str(REPO / "deploy/images")))
        image_tags = [r["image"] for r in built]
        tags += image_tags + [f"skillhost/{r['name']}:latest" for r in built]

        # The lock of the bundled skills (built here if need be).
        (work / "deployment.yaml").write_text(
            "skills:\n" + "".join(f"  {name}: \"^1\"\n" for name in BUNDLED))
        lock = work / "production.lock"
        skillhost("--skills-dir", str(REPO / "skills"), "lock", "--manifest",
                  str(work / "deployment.yaml"), "-o", str(lock))

        # The registry, through the routing mesh when this kernel has it (IPVS): the
        # task turns healthy, yet nothing answers on the published port without it.
        registry_port = free_port()
        publish_mode = "ingress"
        deploy_registry(registry_port, publish_mode)
        wait_for("the registry task to be healthy", registry_task_healthy)
        try:
            wait_for("the registry through the routing mesh", lambda: registry_answers(registry_port),
                     within=15)
        except AssertionError:
            publish_mode = "host"
            report("the routing mesh does not answer here (no IPVS in this kernel?): host mode")
            # A service published through the mesh cannot be probed node by node.
            refused = subprocess.run([str(BINARY), "cluster", "status", "--service",
                                      f"{REGISTRY_STACK}_registry", "--probe"],
                                     capture_output=True, text=True)
            assert refused.returncode == 2, refused
            assert "host mode" in refused.stderr and f"{registry_port} (ingress)" \
                in refused.stderr, refused.stderr
            # The engine may refuse the network while the task still stops ("in use by
            # task"): it is removed again once the containers are gone.
            run("docker", "stack", "rm", REGISTRY_STACK, check=False)
            wait_for("the registry's containers to go",
                     lambda: not stack_containers(REGISTRY_STACK), within=60)
            wait_for("the registry's network to go",
                     lambda: network_removed(f"{REGISTRY_STACK}_default"), within=60)
            deploy_registry(registry_port, publish_mode)
            wait_for("the registry in host mode", lambda: registry_answers(registry_port))
        registry = f"127.0.0.1:{registry_port}"

        # Push the locked images (digests recorded in the lock) and skillhost's image.
        skillhost("push", "--lock", str(lock), "--registry", registry)
        skillhost_tag = next(t for t in image_tags if t.startswith("skillhost/skillhost:"))
        pushed = f"{registry}/{skillhost_tag}"
        run("docker", "tag", skillhost_tag, pushed)
        tags.append(pushed)
        run("docker", "push", "-q", pushed)

        # A fresh node: none of the skills' images is here, so the task pulls them.
        locked_images = [line.split('"')[1] for line in lock.read_text().splitlines()
                         if line.startswith("image = ")]
        assert len(locked_images) == len(BUNDLED), lock.read_text()
        for image in locked_images:
            run("docker", "rmi", image)

        made = subprocess.run([str(BINARY), "token", "swarm-it"], capture_output=True,
                              text=True, check=True)
        token = made.stdout.strip()
        (work / "tokens.toml").write_text(
            "".join(f"{line}\n" for line in made.stderr.splitlines() if not line.startswith("#")))
        api_port = free_port()
        env = {
            "SKILLHOST_IMAGE": pushed,
            "SKILLHOST_LOCK": str(lock),
            "SKILLHOST_TOKENS": str(work / "tokens.toml"),
            "SKILLHOST_REVISION": str(os.getpid()),
            "SKILLHOST_PORT": str(api_port),
            "SKILLHOST_PUBLISH_MODE": publish_mode,
            "SKILLHOST_UPDATE_ORDER": "start-first" if publish_mode == "ingress" else "stop-first",
        }
        server = f"http://{node_address()}:{api_port}"
        started = time.monotonic()
        run("docker", "stack", "deploy", "--detach=true", "-c",
            str(REPO / "deploy/swarm/skillhost.yml"), STACK, env=env)
        # Calls sent while the task is made are refused before they are sent; while it
        # pulls, they are answered 503 host_starting; then they run.
        before: dict = {}

        def answers() -> bool:
            try:
                with Client(server, token=token, timeout=60, retries=0) as client:
                    result = client.invoke("echo", "say", {"text": "first"})
            except (ServiceUnreachable, ServiceError, Unavailable) as e:
                why = never_ran(e)
                assert why, e
                before[why] = before.get(why, 0) + 1
                return False
            assert result.ok, result
            return True

        wait_for("the fresh node to answer a call", answers)
        took = time.monotonic() - started
        assert ready(server)
        report(f"fresh node answers in {took:.1f} s (deploy to the first call answered, "
               f"{len(locked_images)} skills pulled from the registry); before, calls that "
               f"never ran: {before}")
        yield Cluster(server=server, token=token, env=env, work=work, node=node,
                      publish_mode=publish_mode, registry_port=registry_port,
                      second=second if second.made_network else None, tags=tags)
    finally:
        leave_as_found(gwbridge_before, work, tags, second)


def test_calls_through_the_published_port(cluster: Cluster) -> None:
    # Swarm reports the task running only once its health check (skillhost ready) passed.
    wait_for("cluster status to call the node ready",
             lambda: node_report(cluster.node)["readiness"] == "ready")
    status = cluster_status()
    assert status["exit_code"] == 0 and status["service"] == SERVICE, status
    assert node_report(cluster.node)["task_state"] == "running", status
    with cluster.client() as client:
        assert sorted(s.name for s in client.skills()) == BUNDLED
        said = client.invoke("echo", "say", {"text": "through the swarm"})
        assert said.ok and said.output == {"text": "through the swarm"}, said
        ran = client.invoke("python", "run", {"code": "print(6 * 7)"})
        assert ran.ok and "42" in json.dumps(ran.output), ran


def never_ran(error: Exception) -> Optional[str]:
    """Why `error` proves its call did not run, or None when it may have: no connection
    was made, or a task answered 503 while draining or starting."""
    if isinstance(error, ServiceUnreachable):
        return "refused" if error.not_sent else None
    if isinstance(error, Unavailable) and error.code == "host_shutting_down":
        assert error.retry_after, error
        return "host_shutting_down"
    if isinstance(error, ServiceError) and error.status_code == 503 \
            and error.code == "host_starting":
        return "host_starting"
    return None


def test_a_killed_task_is_replaced_and_its_skill_containers_reaped(cluster: Cluster) -> None:
    killed = task_containers()
    assert len(killed) == 1, killed
    instance_of_killed = run("docker", "inspect", "--format", "{{.Id}}", killed[0]).strip()

    outcome: dict = {}

    def long_call() -> None:
        try:
            with cluster.client() as client:
                # With its own env, so a container of its own: the python skill's plain
                # calls share recycled containers, which outlive a call.
                outcome["result"] = client.invoke("python", "run",
                                                  {"code": "import time; time.sleep(20)"},
                                                  env={"LANG": "C.UTF-8"})
        except ServiceUnreachable as e:
            outcome["error"] = e

    # A container of an earlier test's python call may still be on its way out: only
    # one made after this call started is the long call's.
    earlier = set(python_containers())
    caller = threading.Thread(target=long_call)
    caller.start()
    wait_for("the long call's container", lambda: bool(set(python_containers()) - earlier))
    run("docker", "kill", killed[0])
    caller.join(timeout=60)
    error = outcome.get("error")
    assert isinstance(error, ServiceUnreachable) and not error.not_sent, outcome

    # Until the replacement runs its host, calls fail with a clear error that says they
    # never ran (refused before the replacement binds, 503 host_starting while it
    # starts); then they are answered again. The loop asks every 0.1 s, inside the
    # Retry-After, to measure the gap.
    refusals: dict = {}
    answered_at = None
    started = time.monotonic()
    while answered_at is None:
        assert time.monotonic() - started < 180, "no answer after the task was killed"
        try:
            with cluster.client() as client:
                result = client.invoke("echo", "say", {"text": "again"})
            assert result.ok, result
            answered_at = time.monotonic() - started
        except (ServiceUnreachable, ServiceError, Unavailable) as e:
            why = never_ran(e)
            assert why, e
            refusals[why] = refusals.get(why, 0) + 1
            time.sleep(0.1)
    report(f"killed task: calls that never ran {refusals}, answers again after {answered_at:.1f} s")
    replacement = task_containers()
    assert replacement and replacement != killed, replacement
    assert instance_of_killed not in run("docker", "ps", "-q", "--no-trunc").split()
    # The killed host's skill container is a leftover its successor removes at start.
    wait_for("the killed host's skill container to be reaped", lambda: not python_containers(),
             within=60)


def test_a_drained_node_is_not_ready_until_it_is_active_again(cluster: Cluster) -> None:
    run("docker", "node", "update", "--availability", "drain", cluster.node)
    try:
        wait_for("readiness to fall on the drained node", lambda: not ready(cluster.server))
        wait_for("the drained node to run no skillhost task", lambda: not task_containers())
        node = node_report(cluster.node)
        assert node["readiness"] == "drained", node
        assert node["problems"] == ["the node's availability is drain"], node
    finally:
        run("docker", "node", "update", "--availability", "active", cluster.node)
    took = wait_for("the node to be ready again", lambda: ready(cluster.server))
    report(f"drain: active again and ready in {took:.1f} s")
    wait_for("cluster status to call the node ready again",
             lambda: node_report(cluster.node)["readiness"] == "ready")


def test_a_rolling_update_loses_no_call(cluster: Cluster) -> None:
    before = task_containers()
    stop = threading.Event()
    answered: List[int] = []
    failures: List[BaseException] = []
    retried = [0]

    def caller() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            while True:
                try:
                    with cluster.client() as client:
                        result = client.invoke("echo", "say", {"text": str(n)})
                    if not result.ok or result.output != {"text": str(n)}:
                        failures.append(AssertionError(repr(result)))
                    answered.append(n)
                    break
                except (ServiceUnreachable, ServiceError, Unavailable) as e:
                    # Refused before it ran: no connection, or a task draining (told
                    # when to come back) or starting.
                    if not never_ran(e):
                        failures.append(e)
                        break
                    retried[0] += 1
                    time.sleep(getattr(e, "retry_after", None) or 0.05)

    # A second caller leaves it all to the client's own retries, with one client.
    plain_answered: List[int] = []

    def plain_caller() -> None:
        with Client(cluster.server, token=cluster.token, timeout=60, retries=12) as client:
            n = 0
            while not stop.is_set():
                n += 1
                try:
                    result = client.invoke("echo", "say", {"text": f"plain {n}"})
                except Exception as e:  # noqa: BLE001 - every failure is the finding
                    failures.append(e)
                    return
                if result.output != {"text": f"plain {n}"}:
                    failures.append(AssertionError(repr(result)))
                plain_answered.append(n)

    threads = [threading.Thread(target=caller), threading.Thread(target=plain_caller)]
    for thread in threads:
        thread.start()
    try:
        wait_for("calls before the update", lambda: len(answered) >= 5, within=60)
        run("docker", "service", "update", "--detach=false", "--quiet", "--env-add",
            "SKILLHOST_UPDATED=1", SERVICE)
        after = task_containers()
        assert after and after != before, (before, after)
        count, plain_count = len(answered), len(plain_answered)
        wait_for("calls after the update", lambda: len(answered) >= count + 5
                 and len(plain_answered) >= plain_count + 5, within=60)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert not failures, failures
    report(f"update ({cluster.publish_mode} mode): {len(answered)} calls answered, "
           f"{retried[0]} sends refused before reaching a task and sent again, none lost; "
           f"{len(plain_answered)} calls through the client's own retries, none lost")


def long_call(server: str, token: str, outcome: dict) -> threading.Thread:
    def call() -> None:
        with Client(server, token=token, timeout=60, retries=0) as client:
            # With its own env, so a container of its own (not a recycled one).
            outcome["result"] = client.invoke("python", "run", {"code": "import time; time.sleep(3)"},
                                              env={"LANG": "C.UTF-8"})

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def test_a_second_engine_joined_as_a_worker_serves_calls_too(cluster: Cluster) -> None:
    second = cluster.second
    if second is None:
        pytest.skip("this machine could not make the second engine's network namespace")
    second.start(cluster.registry_port)
    join = run("docker", "swarm", "join-token", "-q", "worker").strip()
    joined = time.monotonic()
    second.docker("swarm", "join", "--token", join, "--advertise-addr", SecondEngine.WORKER,
                  f"{SecondEngine.MANAGER}:2377")
    worker = second.docker("info", "--format", "{{.Swarm.NodeID}}").strip()
    worker_server = f"http://{SecondEngine.WORKER}:{cluster.env['SKILLHOST_PORT']}"
    # Swarm schedules the global service's task there; it pulls the skillhost image and
    # then every locked image through the registry, and only then listens.
    wait_for("the worker's skillhost to be ready", lambda: ready(worker_server), within=300)
    report(f"second engine: ready {time.monotonic() - joined:.1f} s after joining the swarm "
           "(skillhost image and the locked skills pulled from the registry)")
    wait_for("cluster status to call both nodes ready", lambda: all(
        n["readiness"] == "ready" for n in cluster_status()["nodes"]) and len(
        cluster_status()["nodes"]) == 2)

    # A call lands on the node it is sent to, and runs on that node's engine.
    def worker_containers() -> List[str]:
        return second.containers("python")

    for server, here, there in ((worker_server, worker_containers, python_containers),
                                (cluster.server, python_containers, worker_containers)):
        # Containers already there (a recycled one of an earlier call, say) are not this
        # call's.
        before_here, before_there = set(here()), set(there())
        outcome: dict = {}
        thread = long_call(server, cluster.token, outcome)
        wait_for(f"the call's container on the engine behind {server}",
                 lambda here=here, before=before_here: bool(set(here()) - before))
        assert not set(there()) - before_there, \
            f"a call to {server} made a container on the other engine"
        thread.join(timeout=60)
        assert outcome["result"].ok, outcome

    # Each node's own service, asked at its address: ready, its skills' pools, and the
    # call running on the worker (and none on the manager's node).
    outcome = {}
    before = set(worker_containers())
    thread = long_call(worker_server, cluster.token, outcome)
    wait_for("the call's container on the worker",
             lambda: bool(set(worker_containers()) - before))
    status = cluster_status("--probe", token=cluster.token)
    thread.join(timeout=60)
    assert outcome["result"].ok, outcome
    port = cluster.env["SKILLHOST_PORT"]
    assert status["published"] == [{"port": int(port), "mode": "host"}], status
    probes = {n["id"]: n["probe"] for n in status["nodes"]}
    assert probes[worker]["endpoint"] == f"{SecondEngine.WORKER}:{port}", probes
    for probe in probes.values():
        assert probe["readiness"]["ready"] and not probe["errors"], probe
        assert sorted(probe["load"]["pools"]) == BUNDLED, probe
    assert {node: p["load"]["in_flight"] for node, p in probes.items()} == {
        worker: 1, cluster.node: 0}, probes
    assert status["exit_code"] == 0, status
    untokened = cluster_status("--probe")
    assert all(n["probe"]["load"] is None and n["probe"]["readiness"]["ready"]
               and any("SKILLHOST_TOKEN" in e for e in n["probe"]["errors"])
               for n in untokened["nodes"]), untokened
    report("cluster status --probe: " + "; ".join(
        f"{p['endpoint']} ready, {p['load']['in_flight']} in flight" for p in probes.values()))

    # Draining the worker takes it out; the manager's node goes on answering.
    run("docker", "node", "update", "--availability", "drain", worker)
    try:
        wait_for("the drained worker to stop answering", lambda: not ready(worker_server))
        assert node_report(worker)["readiness"] == "drained"
        with cluster.client() as client:
            assert client.invoke("echo", "say", {"text": "still here"}).ok
        wait_for("the worker's skill containers to go", lambda: not second.docker(
            "ps", "-aq", "--filter", "label=io.skillhost.managed=true").split(), within=60)
    finally:
        run("docker", "node", "update", "--availability", "active", worker)
