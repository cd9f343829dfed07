//! Which host process created a container, and whether that process still lives.
//!
//! An instance id is `hostname:pid:starttime`, the start time being the kernel's, in clock
//! ticks since boot. A pid can be reused, the pair cannot, so a container whose instance
//! is not running on this machine any more is a leftover that is safe to remove.
//!
//! A host that runs in a container itself (one skillhost task per node under Swarm, the
//! node's engine socket mounted) has its container's hostname, which its replacement does
//! not share. Its id then ends in `@<container id>`, and another host on the same engine
//! judges it by asking the engine whether that container still runs.

use crate::engine::ContainerEngine;

/// This process's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
}

/// What an instance id says about its process, as far as this process can tell alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// A process of this machine (this kernel's pid namespace) that runs.
    Alive,
    /// A process of this machine that is gone.
    Dead,
    /// A process in another container of an engine: alive while that container runs.
    InContainer(String),
    /// Another machine's, or not an instance id: never judged.
    Unknown,
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Field 22 of `/proc/<pid>/stat`: the process start time.
fn start_time(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses; fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19).map(str::to_owned)
}

/// The id of the Docker container this process runs in, read from the engine's bind
/// mounts of `/etc/hostname` and friends (`…/containers/<64 hex>/hostname`).
pub(crate) fn own_container() -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    container_in_mountinfo(&mountinfo)
}

fn container_in_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        // Field 4 is the mount's root within its filesystem; field 5 where it is mounted.
        let mut fields = line.split_whitespace().skip(3);
        let (root, point) = (fields.next()?, fields.next()?);
        if point != "/etc/hostname" {
            return None;
        }
        let id = root.strip_suffix("/hostname")?.rsplit('/').next()?;
        (id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit())).then(|| id.to_string())
    })
}

impl Instance {
    pub fn current() -> Instance {
        let pid = std::process::id().to_string();
        let start = start_time(&pid).unwrap_or_else(|| "0".into());
        let mut id = format!("{}:{pid}:{start}", hostname());
        if let Some(container) = own_container() {
            id.push('@');
            id.push_str(&container);
        }
        Instance { id }
    }

    /// [`Instance::current`], with the container only when `docker` is the engine that
    /// runs it: a host in a container that drives another machine's engine must not be
    /// judged by an engine that never heard of its container.
    pub(crate) async fn on_engine(engine: &dyn ContainerEngine) -> Instance {
        let mut me = Instance::current();
        if let Some((process, container)) = me.id.split_once('@') {
            if container_running(engine, container).await != Some(true) {
                me.id = process.to_string();
            }
        }
        me
    }

    /// What `id` says, judged from this process (in container `own`, if any): a process
    /// in another container by that container (even under the same hostname, which two
    /// tasks of one service may share), any other of this hostname by its pid and start
    /// time.
    pub(crate) fn liveness(id: &str, own: Option<&str>) -> Liveness {
        let (process, container) = match id.split_once('@') {
            Some((process, container)) => (process, Some(container)),
            None => (id, None),
        };
        let mut parts = process.rsplitn(3, ':');
        let (Some(start), Some(pid), Some(host)) = (parts.next(), parts.next(), parts.next())
        else {
            return Liveness::Unknown;
        };
        if pid.parse::<u32>().is_err() {
            return Liveness::Unknown;
        }
        match container {
            Some("") => Liveness::Unknown,
            Some(container) if Some(container) != own => Liveness::InContainer(container.into()),
            _ if host != hostname() => Liveness::Unknown,
            _ if start_time(pid).as_deref() == Some(start) => Liveness::Alive,
            _ => Liveness::Dead,
        }
    }
}

/// Whether the engine runs container `id`: `Some(false)` when it is stopped or unknown to
/// the engine, `None` when the engine could not tell.
pub(crate) async fn container_running(engine: &dyn ContainerEngine, id: &str) -> Option<bool> {
    match engine.running(id).await {
        Ok(running) => Some(running),
        Err(e) => {
            tracing::warn!(
                container = id,
                "cannot tell whether a host's container runs: {e}"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = Instance::current();
        let own = own_container();
        assert_eq!(Instance::liveness(&me.id, own.as_deref()), Liveness::Alive);
        let (process, container) = me.id.split_once('@').unwrap_or((&me.id, ""));
        let (prefix, _) = process.rsplit_once(':').unwrap();
        let restarted = match container {
            "" => format!("{prefix}:1"),
            c => format!("{prefix}:1@{c}"),
        };
        assert_eq!(
            Instance::liveness(&restarted, own.as_deref()),
            Liveness::Dead
        );
        assert_eq!(
            Instance::liveness(&format!("{}:999999999:5", hostname()), None),
            Liveness::Dead
        );
    }

    #[test]
    fn other_machines_and_garbage_are_not_judged() {
        for id in [
            "some-other-host:1:1",
            "garbage",
            "other:x:1@abc",
            "some-other-host:1:1@",
        ] {
            assert_eq!(Instance::liveness(id, None), Liveness::Unknown, "{id}");
        }
    }

    #[test]
    fn a_process_in_another_container_is_judged_by_its_container() {
        assert_eq!(
            Instance::liveness("89fe78757e2a:1:4242@89fe78757e2a1229", Some("0123")),
            Liveness::InContainer("89fe78757e2a1229".into())
        );
        // Two tasks of one service may be given one hostname: the container decides.
        assert_eq!(
            Instance::liveness(&format!("{}:1:4242@89fe78757e2a1229", hostname()), None),
            Liveness::InContainer("89fe78757e2a1229".into())
        );
    }

    #[test]
    fn the_container_is_read_from_the_hostname_mount() {
        let id = "89fe78757e2a122958371d909c5b28d6461f1651dbf2d676d6cdef8f85927c4d";
        let mountinfo = format!(
            "22 27 0:21 / /proc rw,relatime - proc proc rw\n\
             89 72 254:0 /var/lib/docker/containers/{id}/resolv.conf /etc/resolv.conf rw - ext4 /dev/vda rw\n\
             90 72 254:0 /var/lib/docker/containers/{id}/hostname /etc/hostname rw - ext4 /dev/vda rw\n"
        );
        assert_eq!(container_in_mountinfo(&mountinfo), Some(id.to_string()));
        assert_eq!(
            container_in_mountinfo("22 27 0:21 / /proc rw,relatime - proc proc rw\n"),
            None
        );
        assert_eq!(
            container_in_mountinfo(
                "90 72 254:0 /somewhere/short/hostname /etc/hostname rw - ext4 x rw\n"
            ),
            None
        );
    }
}
