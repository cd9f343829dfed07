//! What a session may be, decided with no engine: the skill must declare `run.session`,
//! the caller's timeouts must be within the manifest's ceilings, and every variable must be
//! allowlisted. Then when a session ends, from its clocks alone.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use skillhost_api::codes;

use crate::catalog::Skill;
use crate::manifest::SessionSettings;
use crate::vocab::Refusal;

/// A session's terms, as admitted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Terms {
    /// Ends after this long without a call or file operation.
    pub(crate) idle_timeout: Duration,
    /// Ends this long after it was made.
    pub(crate) lifetime: Duration,
    /// Variables of every container of the session.
    pub(crate) env: BTreeMap<String, String>,
}

/// The settings of a skill that takes sessions, or why it takes none.
pub(crate) fn settings(skill: &Skill) -> Result<&SessionSettings, Refusal> {
    skill.manifest.run.session.as_ref().ok_or_else(|| {
        Refusal::new(
            codes::INVALID_SESSION,
            format!(
                "skill {} takes no sessions: its manifest declares no run.session",
                skill.name()
            ),
        )
    })
}

/// Admit a session of `skill` with the caller's choices.
pub(crate) fn admit(
    skill: &Skill,
    idle_timeout: Option<Duration>,
    lifetime: Option<Duration>,
    env: BTreeMap<String, String>,
) -> Result<Terms, Refusal> {
    let settings = settings(skill)?;
    let idle_timeout = within(
        "idle_timeout_ms",
        idle_timeout,
        settings.idle_timeout.0,
        settings.idle_ceiling().0,
    )?;
    let lifetime = within(
        "max_lifetime_ms",
        lifetime,
        settings.lifetime.0,
        settings.lifetime_ceiling().0,
    )?;
    let allowed = &skill.manifest.run.env;
    if let Some(name) = env.keys().find(|name| !allowed.contains(name)) {
        return Err(Refusal::new(
            codes::INVALID_SESSION,
            format!(
                "environment variable {name:?} is not in {}'s run.env ({})",
                skill.name(),
                if allowed.is_empty() {
                    "which is empty".to_string()
                } else {
                    allowed.join(", ")
                }
            ),
        ));
    }
    Ok(Terms {
        idle_timeout,
        lifetime,
        env,
    })
}

/// The caller's duration if above zero and at most `ceiling`, else the default.
fn within(
    field: &str,
    asked: Option<Duration>,
    default: Duration,
    ceiling: Duration,
) -> Result<Duration, Refusal> {
    match asked {
        None => Ok(default),
        Some(d) if !d.is_zero() && d <= ceiling => Ok(d),
        Some(d) => Err(Refusal::new(
            codes::INVALID_SESSION,
            format!(
                "{field} {} is out of range: give 1 to {} (the manifest's ceiling)",
                d.as_millis(),
                ceiling.as_millis()
            ),
        )),
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ending {
    /// Its owner ended it.
    Closed,
    /// Nothing touched it for its idle timeout.
    Idle,
    /// Its lifetime ran out.
    Lifetime,
    /// The host stopped.
    Shutdown,
    /// Its keeper (and with it the workspace) was gone: the engine restarted, or someone
    /// removed it.
    Lost,
}

impl Ending {
    /// The metrics label and log word.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Ending::Closed => "closed",
            Ending::Idle => "idle",
            Ending::Lifetime => "lifetime",
            Ending::Shutdown => "shutdown",
            Ending::Lost => "lost",
        }
    }
}

/// A session's clocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Clocks {
    pub(crate) created: SystemTime,
    pub(crate) last_used: SystemTime,
    pub(crate) idle_timeout: Duration,
    pub(crate) lifetime: Duration,
}

impl Clocks {
    /// When it ends unless touched first.
    pub(crate) fn idle_deadline(&self) -> SystemTime {
        self.last_used + self.idle_timeout
    }

    /// When it ends whatever happens.
    pub(crate) fn lifetime_deadline(&self) -> SystemTime {
        self.created + self.lifetime
    }

    /// Whether it has ended by `now`, and why (the lifetime first).
    pub(crate) fn expired(&self, now: SystemTime) -> Option<Ending> {
        if now >= self.lifetime_deadline() {
            Some(Ending::Lifetime)
        } else if now >= self.idle_deadline() {
            Some(Ending::Idle)
        } else {
            None
        }
    }
}

/// Milliseconds since the Unix epoch.
pub(crate) fn epoch_ms(at: SystemTime) -> u64 {
    at.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::manifest::Manifest;

    fn skill(session: &str) -> Skill {
        let text = format!(
            "name: py\nversion: 1.0.0\nprotocol: '^1'\nrun:\n  env: [LANG]\n{session}actions: {{run: {{}}}}\n"
        );
        Skill {
            manifest: Manifest::parse(&text).unwrap(),
            dir: PathBuf::from("/skills/py"),
            relative_dir: PathBuf::from("py"),
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_skill_without_run_session_takes_none() {
        let refused = admit(&skill(""), None, None, BTreeMap::new()).unwrap_err();
        assert_eq!(refused.code, codes::INVALID_SESSION);
        assert!(refused.message.contains("declares no run.session"));
    }

    #[test]
    fn the_caller_may_ask_for_less_never_more() {
        let s = skill(
            "  session: {mode: files, idle_timeout: 1m, max_idle_timeout: 5m, lifetime: 1h}\n",
        );
        let terms = admit(&s, None, None, BTreeMap::new()).unwrap();
        assert_eq!((terms.idle_timeout, terms.lifetime), (secs(60), secs(3600)));
        let terms = admit(&s, Some(secs(300)), Some(secs(10)), BTreeMap::new()).unwrap();
        assert_eq!((terms.idle_timeout, terms.lifetime), (secs(300), secs(10)));
        for (idle, lifetime, field) in [
            (Some(secs(301)), None, "idle_timeout_ms 301000"),
            (None, Some(secs(3601)), "max_lifetime_ms 3601000"),
            (Some(Duration::ZERO), None, "idle_timeout_ms 0"),
        ] {
            let refused = admit(&s, idle, lifetime, BTreeMap::new()).unwrap_err();
            assert_eq!(refused.code, codes::INVALID_SESSION);
            assert!(refused.message.starts_with(field), "{}", refused.message);
        }
    }

    #[test]
    fn only_allowlisted_variables_pass() {
        let s = skill("  session: {mode: process}\n");
        let ok = BTreeMap::from([("LANG".to_string(), "C".to_string())]);
        assert_eq!(admit(&s, None, None, ok.clone()).unwrap().env, ok);
        let bad = BTreeMap::from([("PATH".to_string(), "/x".to_string())]);
        let refused = admit(&s, None, None, bad).unwrap_err();
        assert!(refused
            .message
            .contains("\"PATH\" is not in py's run.env (LANG)"));
    }

    #[test]
    fn a_session_ends_at_the_first_of_its_deadlines() {
        let t0 = SystemTime::UNIX_EPOCH + secs(1000);
        let clocks = Clocks {
            created: t0,
            last_used: t0 + secs(50),
            idle_timeout: secs(30),
            lifetime: secs(100),
        };
        assert_eq!(clocks.expired(t0 + secs(79)), None);
        assert_eq!(clocks.expired(t0 + secs(80)), Some(Ending::Idle));
        let busy = Clocks {
            last_used: t0 + secs(99),
            ..clocks
        };
        assert_eq!(busy.expired(t0 + secs(100)), Some(Ending::Lifetime));
        assert_eq!(epoch_ms(t0), 1_000_000);
    }
}
