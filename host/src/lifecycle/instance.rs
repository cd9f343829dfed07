//! Which host process created a container, and whether that process still lives.
//!
//! An instance id is `hostname:pid:starttime`, the start time being the kernel's, in clock
//! ticks since boot. A pid can be reused, the pair cannot, so a container whose instance
//! is not running on this machine any more is a leftover that is safe to remove.

/// This process's identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
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

impl Instance {
    pub fn current() -> Instance {
        let pid = std::process::id().to_string();
        let start = start_time(&pid).unwrap_or_else(|| "0".into());
        Instance {
            id: format!("{}:{pid}:{start}", hostname()),
        }
    }

    /// `Some(false)` when `id` names a process of this machine that is gone; `None` when
    /// it belongs to another machine (or is not an instance id), which we cannot judge.
    pub fn is_alive(id: &str) -> Option<bool> {
        let mut parts = id.rsplitn(3, ':');
        let (start, pid, host) = (parts.next()?, parts.next()?, parts.next()?);
        if host != hostname() || pid.parse::<u32>().is_err() {
            return None;
        }
        Some(start_time(pid).as_deref() == Some(start))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = Instance::current();
        assert_eq!(Instance::is_alive(&me.id), Some(true));
        let (prefix, _) = me.id.rsplit_once(':').unwrap();
        assert_eq!(Instance::is_alive(&format!("{prefix}:1")), Some(false));
        assert_eq!(
            Instance::is_alive(&format!("{}:999999999:5", hostname())),
            Some(false)
        );
    }

    #[test]
    fn other_machines_and_garbage_are_not_judged() {
        assert_eq!(Instance::is_alive("some-other-host:1:1"), None);
        assert_eq!(Instance::is_alive("garbage"), None);
    }
}
