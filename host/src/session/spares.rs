//! Sessions made ahead: for a skill with prewarmed containers (`run.prewarm`, or the
//! host's override), as many spare sessions as it has prewarmed containers, each a
//! workspace volume, a started keeper and, for a `process` session, a started worker
//! (the python skill's interpreter, its imports done). Opening a session of such a skill
//! takes one, and no container is made on the caller's path; a new spare is made behind.
//!
//! A spare's keeper was labelled before its owner was known, and labels never change: the
//! record of the session it became goes on a container of its own, created (never
//! started) right after the claim, off the caller's path. A host killed in that instant
//! loses the session; one adopting it later finds the record there.

use std::sync::Arc;

use skillhost_api::SessionInfo;

use super::record::Record;
use super::terms::Terms;
use super::{Inner, Open, Sessions};
use crate::catalog::Skill;
use crate::invoke::images::SkillImage;
use crate::lifecycle::labels::{self, Role};
use crate::paths::serve_worker::Worker;
use crate::sync::lock;
use crate::vocab::Refusal;

/// A session made ahead, owned by no one yet.
#[derive(Debug)]
pub(crate) struct Spare {
    pub(crate) id: String,
    /// Its image, as it was made of.
    image: String,
    keeper: String,
    worker: Option<Worker>,
}

impl Sessions {
    /// A ready spare of `skill` made of `image`; one of an older image is removed.
    pub(super) async fn take_spare(&self, skill: &str, image: &str) -> Option<Spare> {
        loop {
            let spare = lock(&self.inner.spares).take(skill)?;
            if spare.image == image {
                return Some(spare);
            }
            self.inner.discard(spare).await;
        }
    }

    /// Open a session of `record` in `spare`, and record it on a container of its own.
    pub(super) fn claim(
        &self,
        skill: &Skill,
        record: Record,
        spare: Spare,
    ) -> Result<SessionInfo, Refusal> {
        let Spare { keeper, worker, .. } = spare;
        let open = Arc::new(Open::new(record, keeper, None));
        if let Ok(mut slot) = open.slot.try_lock() {
            slot.worker = worker;
        }
        if let Err(refusal) = self.reserve(&open) {
            let inner = self.inner.clone();
            tokio::spawn(async move { inner.dismantle(&open).await });
            return Err(refusal);
        }
        let info = self.opened(&open);
        let (inner, skill) = (self.inner.clone(), skill.clone());
        tokio::spawn(async move { inner.record_claim(&skill, &open).await });
        Ok(info)
    }

    /// Make spares of `skill` in `image` until `target` are ready or being made.
    pub(crate) fn refill(&self, skill: &Skill, image: &SkillImage, target: usize) {
        let wanted =
            lock(&self.inner.spares).reserve(skill.name(), target, self.inner.limits.max_open);
        for _ in 0..wanted {
            let inner = self.inner.clone();
            let (skill, image) = (skill.clone(), image.clone());
            tokio::spawn(async move {
                let made = inner.make_spare(&skill, &image).await;
                let back = lock(&inner.spares).made(skill.name(), made);
                // Made after the sessions closed: not kept.
                if let Some(spare) = back {
                    inner.discard(spare).await;
                }
            });
        }
    }

    /// Spares of `skill` ready to take.
    pub(crate) fn spares_ready(&self, skill: &str) -> usize {
        lock(&self.inner.spares).ready(skill)
    }
}

impl Inner {
    /// One spare of `skill`; `None` (logged) when the engine would not make it.
    async fn make_spare(&self, skill: &Skill, image: &SkillImage) -> Option<Spare> {
        let settings = skill.manifest.run.session.as_ref()?;
        let terms = Terms {
            idle_timeout: settings.idle_timeout.0,
            lifetime: settings.lifetime.0,
            env: Default::default(),
        };
        let id = uuid::Uuid::new_v4().simple().to_string();
        let record = Record::new(id.clone(), skill, image, terms, None, self.scope.clone()).ok()?;
        let keeper = labels::container_name(skill.name(), Role::SessionSpare(&id));
        match self
            .make(skill, &record, &keeper, Role::SessionSpare(&id))
            .await
        {
            Ok(worker) => Some(Spare {
                id,
                image: image.reference.clone(),
                keeper,
                worker,
            }),
            Err(refusal) => {
                tracing::warn!(
                    skill = skill.name(),
                    "cannot make a spare session: {refusal}"
                );
                self.discard(Spare {
                    id,
                    image: image.reference.clone(),
                    keeper,
                    worker: None,
                })
                .await;
                None
            }
        }
    }

    /// Remove a spare: its worker, its keeper, its volume.
    pub(super) async fn discard(&self, spare: Spare) {
        if let Some(worker) = spare.worker {
            self.remove_container(&worker.name).await;
        }
        self.remove_container(&spare.keeper).await;
        self.remove_volume(&labels::session_volume(&spare.id)).await;
    }

    /// Create the container that carries `open`'s record; removed at once should the
    /// session have ended meanwhile.
    async fn record_claim(&self, skill: &Skill, open: &Arc<Open>) {
        let record = &open.record;
        let name = labels::container_name(&record.skill, Role::SessionRecord(&record.id));
        let mut spec = self.spec(skill, record, Role::SessionRecord(&record.id));
        spec.cmd = Some(vec!["--hold".into()]);
        spec.interactive = false;
        self.reaper.track(&name);
        if let Err(e) = self.engine.create(&name, &spec).await {
            tracing::warn!(session = %record.id, "cannot record a session (a host that adopts it will not find it): {e}");
            self.reaper.remove_later(&name);
            return;
        }
        *lock(&open.record_holder) = Some(name.clone());
        let still_open = lock(&self.open).contains_key(&record.id);
        if !still_open && lock(&open.record_holder).take().is_some() {
            self.remove_container(&name).await;
        }
    }
}
