//! What a session's keeper and volume carry of it, so a host started after this one died
//! can adopt it: everything but its idle clock, which restarts at adoption.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use skillhost_api::codes;

use super::terms::Terms;
use crate::catalog::Skill;
use crate::invoke::images::SkillImage;
use crate::lifecycle::instance::Instance;
use crate::lifecycle::labels::{self, Role};
use crate::manifest::SessionMode;
use crate::run::run_as::RunAs;
use crate::vocab::Refusal;

/// A session's record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) id: String,
    pub(crate) skill: String,
    /// Who made it (the service's token name); `None` for a library caller.
    pub(crate) owner: Option<String>,
    pub(crate) mode: SessionMode,
    /// `skill-<name>:<hash>`, or a locked image's ID.
    pub(crate) image: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// The image's command under skillhost's init.
    pub(crate) init_command: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) created_ms: u64,
    pub(crate) idle_timeout_ms: u64,
    pub(crate) lifetime_ms: u64,
    pub(crate) workspace_bytes: u64,
    /// The scope of the host that made it (a service's socket): only a host of the same
    /// scope adopts it. Absent in records of earlier versions, and for library hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) scope: Option<String>,
}

impl Record {
    /// Session `id` of `skill` in `image` on `terms`, made now for `owner` by a host of
    /// `scope`.
    pub(crate) fn new(
        id: String,
        skill: &Skill,
        image: &SkillImage,
        terms: Terms,
        owner: Option<String>,
        scope: Option<String>,
    ) -> Result<Record, Refusal> {
        let settings = super::terms::settings(skill)?;
        let Some(init_command) = image.init_command.clone() else {
            return Err(Refusal::new(
                codes::INVALID_SESSION,
                format!(
                    "image {} has no skillhost init, which sessions need: rebuild it with this version of skillhost",
                    image.reference
                ),
            ));
        };
        Ok(Record {
            id,
            skill: skill.name().to_string(),
            owner,
            mode: settings.mode,
            image: image.reference.clone(),
            uid: image.run_as.uid,
            gid: image.run_as.gid,
            init_command,
            env: terms.env,
            created_ms: super::terms::epoch_ms(SystemTime::now()),
            idle_timeout_ms: terms.idle_timeout.as_millis() as u64,
            lifetime_ms: terms.lifetime.as_millis() as u64,
            workspace_bytes: settings.workspace.0,
            scope,
        })
    }

    pub(crate) fn run_as(&self) -> RunAs {
        RunAs {
            uid: self.uid,
            gid: self.gid,
        }
    }

    pub(crate) fn created(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(self.created_ms)
    }

    pub(crate) fn volume(&self) -> String {
        labels::session_volume(&self.id)
    }

    /// The labels of a container of the session in `role`: the usual four, the
    /// session's id, and this record on a keeper or a record holder.
    pub(crate) fn labels(&self, role: Role<'_>, instance: &Instance) -> HashMap<String, String> {
        let mut labels = labels::for_container(&self.skill, role, instance);
        labels.insert(labels::SESSION.to_string(), self.id.clone());
        if matches!(role, Role::SessionKeeper(_) | Role::SessionRecord(_)) {
            // Serializing plain data cannot fail.
            let record = serde_json::to_string(self).unwrap_or_default();
            labels.insert(labels::SESSION_RECORD.to_string(), record);
        }
        labels
    }

    /// The labels of the session's volume: managed, its skill, its id, this host.
    pub(crate) fn volume_labels(&self, instance: &Instance) -> HashMap<String, String> {
        HashMap::from([
            (labels::MANAGED.to_string(), "true".to_string()),
            (labels::SKILL.to_string(), self.skill.clone()),
            (labels::SESSION.to_string(), self.id.clone()),
            (labels::INSTANCE.to_string(), instance.id.clone()),
        ])
    }

    /// The record a keeper's labels carry; `None` when they carry none that reads.
    pub(crate) fn from_labels(labels: &HashMap<String, String>) -> Option<Record> {
        let record: Record = serde_json::from_str(labels.get(labels::SESSION_RECORD)?).ok()?;
        (labels.get(labels::SESSION) == Some(&record.id)).then_some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Record {
        Record {
            id: "3f2a".into(),
            skill: "python".into(),
            owner: Some("alice".into()),
            mode: SessionMode::Process,
            image: "skill-python:abc".into(),
            uid: 10001,
            gid: 10001,
            init_command: vec!["python3".into()],
            env: BTreeMap::from([("LANG".into(), "C".into())]),
            created_ms: 1_000,
            idle_timeout_ms: 60_000,
            lifetime_ms: 3_600_000,
            workspace_bytes: 1 << 20,
            scope: Some("serve:/run/skillhost.sock".into()),
        }
    }

    #[test]
    fn a_keeper_carries_its_record_and_a_worker_only_the_id() {
        let instance = Instance {
            id: "host:1:2".into(),
        };
        let keeper = record().labels(Role::SessionKeeper("3f2a"), &instance);
        assert_eq!(Record::from_labels(&keeper), Some(record()));
        assert_eq!(keeper[labels::INVOCATION], "session-keeper");
        let worker = record().labels(Role::SessionWorker("3f2a"), &instance);
        assert_eq!(worker[labels::SESSION], "3f2a");
        assert_eq!(Record::from_labels(&worker), None);
    }

    #[test]
    fn a_record_under_another_sessions_id_is_not_read() {
        let instance = Instance {
            id: "host:1:2".into(),
        };
        let mut keeper = record().labels(Role::SessionKeeper("3f2a"), &instance);
        keeper.insert(labels::SESSION.into(), "other".into());
        assert_eq!(Record::from_labels(&keeper), None);
    }
}
