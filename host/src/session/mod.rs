//! Sessions: a skill's sandbox that keeps its files (and, in `process` mode, its process)
//! across one caller's calls. See docs/sessions.md.
//!
//! Every session has a workspace volume (a tmpfs the engine sizes, owned by the skill's
//! user, `nosuid,nodev`) and a keeper: a container of the skill's image, hardened as any
//! call's, whose only process is skillhost's init in `--hold` mode. The keeper holds the
//! volume mounted (the engine unmounts a tmpfs volume, losing its files, once no
//! container uses it), and the workspace's file operations run in it. A `files` session's
//! calls are fresh containers with the volume at `/workspace`; a `process` session also
//! has one worker of its own, the skill in serve mode, answering its calls one at a time.
//!
//! [`terms`] admits a session with no engine; [`record`] is what the keeper's labels keep
//! of it for a host that adopts it after this one died ([`adopt`]); [`files`] is the
//! workspace's file operations; [`expiry`] ends sessions at their deadlines.

pub(crate) mod adopt;
pub(crate) mod expiry;
pub mod files;
pub(crate) mod record;
pub(crate) mod spares;
pub(crate) mod terms;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use skill_sdk::SERVE_MODE_ENV;
use skillhost_api::{codes, SessionInfo, SessionKind};

use crate::catalog::Skill;
use crate::engine::containers::{CallError, Leftovers};
use crate::engine::spec::{ContainerSpec, TmpfsVolume};
use crate::engine::Containers;
use crate::invoke::images::SkillImage;
use crate::lifecycle::instance::Instance;
use crate::lifecycle::labels::{self, Role};
use crate::lifecycle::reaper::Reaper;
use crate::lifecycle::stock::Stock;
use crate::manifest::SessionMode;
use crate::paths::serve_worker::Worker;
use crate::run::container::{run_container, RunOutcome, RunRequest};
use crate::run::container_spec::{container_spec, ContainerInputs, Workspace};
use crate::run::exit_trailer::new_key;
use crate::sync::lock;
use crate::vocab::Refusal;

use self::record::Record;
use self::terms::{Clocks, Ending, Terms};

pub use self::files::{Download, FileError};

/// Open sessions, by skill (a gauge).
pub(crate) const OPEN: &str = "skillhost_sessions_open";
/// Sessions ended, by skill and why (`closed`, `idle`, `lifetime`, `shutdown`, `lost`).
pub(crate) const ENDED: &str = "skillhost_sessions_ended_total";
/// `process` sessions whose process was lost and restarted, by skill.
pub(crate) const RESETS: &str = "skillhost_session_resets_total";

/// Bytes of a workspace per inode it may have: enough files for any real use, and a
/// bound on what a flood of empty files costs the kernel.
const BYTES_PER_INODE: u64 = 4096;
/// How long the end of a session waits for its volume to be let go (a call's container
/// still being removed holds it).
const VOLUME_RELEASE: Duration = Duration::from_secs(10);

/// Limits of a host's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// Open sessions on the host.
    pub(crate) max_open: usize,
    /// Open sessions of one owner.
    pub(crate) max_per_owner: usize,
    /// Largest upload or download.
    pub(crate) max_file_bytes: u64,
}

/// A `process` session's worker, and a loss not yet reported.
#[derive(Debug, Default)]
struct Slot {
    worker: Option<Worker>,
    /// Why the process was lost, when no result has said so yet.
    unreported: Option<String>,
}

/// One open session.
#[derive(Debug)]
pub(crate) struct Open {
    pub(crate) record: Record,
    keeper: String,
    last_used: Mutex<SystemTime>,
    slot: tokio::sync::Mutex<Slot>,
    /// The container that carries the record of a session whose keeper was a spare.
    record_holder: Mutex<Option<String>>,
    /// Calls and file operations under way: an idle session is one with none.
    busy: AtomicUsize,
    ready: AtomicBool,
}

impl Open {
    fn new(record: Record, keeper: String, unreported: Option<String>) -> Self {
        Open {
            record,
            keeper,
            last_used: Mutex::new(SystemTime::now()),
            slot: tokio::sync::Mutex::new(Slot {
                worker: None,
                unreported,
            }),
            record_holder: Mutex::new(None),
            busy: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
        }
    }

    fn clocks(&self) -> Clocks {
        Clocks {
            created: self.record.created(),
            last_used: *lock(&self.last_used),
            idle_timeout: Duration::from_millis(self.record.idle_timeout_ms),
            lifetime: Duration::from_millis(self.record.lifetime_ms),
        }
    }

    /// What its owner is told of it.
    pub(crate) fn info(&self) -> SessionInfo {
        let clocks = self.clocks();
        let r = &self.record;
        let mode = match r.mode {
            SessionMode::Files => SessionKind::Files,
            SessionMode::Process => SessionKind::Process,
        };
        let mut info = SessionInfo::new(&r.id, &r.skill, &r.image, mode);
        info.created_at_ms = r.created_ms;
        info.idle_timeout_ms = r.idle_timeout_ms;
        info.max_lifetime_ms = r.lifetime_ms;
        info.lifetime_deadline_ms = terms::epoch_ms(clocks.lifetime_deadline());
        // Never promises past the lifetime.
        info.idle_deadline_ms =
            terms::epoch_ms(clocks.idle_deadline()).min(info.lifetime_deadline_ms);
        info.workspace_bytes = r.workspace_bytes;
        info
    }

    /// The user file operations run as.
    pub(crate) fn user(&self) -> String {
        self.record.run_as().to_string()
    }

    pub(crate) fn keeper(&self) -> &str {
        &self.keeper
    }

    /// Reset the idle clock.
    pub(crate) fn touch(&self) {
        *lock(&self.last_used) = SystemTime::now();
    }

    /// Mark a call or file operation under way until the guard goes; the idle clock
    /// restarts at both ends.
    pub(crate) fn busy(self: &Arc<Self>) -> Busy {
        self.touch();
        self.busy.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }
}

/// A call or file operation under way in a session.
#[derive(Debug)]
pub(crate) struct Busy(Arc<Open>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A host's sessions.
#[derive(Debug)]
pub(crate) struct Sessions {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    engine: Containers,
    reaper: Reaper,
    instance: Instance,
    limits: Limits,
    open: Mutex<BTreeMap<String, Arc<Open>>>,
    /// Sessions made ahead, per skill.
    spares: Mutex<Stock<spares::Spare>>,
    closed: AtomicBool,
    /// Held (shared) by every session being ended, so shutdown waits for the ends it did
    /// not start (a close on another task) before the process may exit.
    ending: tokio::sync::RwLock<()>,
    /// Recorded with each session; only sessions of this scope are adopted.
    scope: Option<String>,
}

/// What a call in a session did, for its result.
#[derive(Debug)]
pub(crate) struct SessionRun {
    pub(crate) outcome: RunOutcome,
    /// The call cost the session its process.
    pub(crate) state_reset: bool,
}

impl Sessions {
    pub(crate) fn new(
        engine: Containers,
        instance: Instance,
        limits: Limits,
        scope: Option<String>,
    ) -> Self {
        let reaper = Reaper::new(engine.clone());
        let inner = Arc::new(Inner {
            engine,
            reaper,
            instance,
            limits,
            open: Mutex::default(),
            spares: Mutex::default(),
            closed: AtomicBool::new(false),
            ending: tokio::sync::RwLock::new(()),
            scope,
        });
        expiry::spawn(Arc::downgrade(&inner));
        Sessions { inner }
    }

    pub(crate) fn limits(&self) -> Limits {
        self.inner.limits
    }

    /// The engine the sessions' containers run on.
    pub(crate) fn engine(&self) -> Containers {
        self.inner.engine.clone()
    }

    /// The open session `id` of `owner`; another owner's is as unknown as a missing one.
    pub(crate) fn get(&self, id: &str, owner: Option<&str>) -> Result<Arc<Open>, Refusal> {
        lock(&self.inner.open)
            .get(id)
            .filter(|open| open.ready.load(Ordering::SeqCst))
            .filter(|open| open.record.owner.as_deref() == owner)
            .cloned()
            .ok_or_else(|| {
                Refusal::new(
                    codes::UNKNOWN_SESSION,
                    format!(
                        "no open session {id:?} of this caller: it ended, expired or never existed"
                    ),
                )
            })
    }

    /// The open sessions of `owner`, oldest first.
    pub(crate) fn list(&self, owner: Option<&str>) -> Vec<SessionInfo> {
        let mut found: Vec<SessionInfo> = lock(&self.inner.open)
            .values()
            .filter(|open| open.ready.load(Ordering::SeqCst))
            .filter(|open| open.record.owner.as_deref() == owner)
            .map(|open| open.info())
            .collect();
        found.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        found
    }

    /// Open sessions of every owner.
    pub(crate) fn count(&self) -> usize {
        lock(&self.inner.open).len()
    }

    /// Make a session of `skill` in `image` for `owner`: a spare one when one is ready
    /// (and the session asks for no variables), else a new one; then keep `spares` spare
    /// sessions of the skill.
    pub(crate) async fn open(
        &self,
        skill: &Skill,
        image: &SkillImage,
        terms: Terms,
        owner: Option<String>,
        spares: usize,
    ) -> Result<SessionInfo, Refusal> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let scope = self.inner.scope.clone();
        let mut record = Record::new(id, skill, image, terms, owner, scope)?;
        let spare = if record.env.is_empty() {
            self.take_spare(skill.name(), &image.reference).await
        } else {
            None
        };
        let opened = match spare {
            Some(spare) => {
                record.id = spare.id.clone();
                self.claim(skill, record, spare)
            }
            None => self.open_new(skill, record).await,
        };
        if spares > 0 {
            self.refill(skill, image, spares);
        }
        opened
    }

    /// A new session: its volume, keeper and worker made now.
    async fn open_new(&self, skill: &Skill, record: Record) -> Result<SessionInfo, Refusal> {
        let keeper = labels::container_name(skill.name(), Role::SessionKeeper(&record.id));
        let open = Arc::new(Open::new(record, keeper, None));
        self.reserve(&open)?;
        let role = Role::SessionKeeper(&open.record.id);
        match self
            .inner
            .make(skill, &open.record, &open.keeper, role)
            .await
        {
            Ok(worker) => {
                open.slot.lock().await.worker = worker;
                Ok(self.opened(&open))
            }
            Err(refusal) => {
                lock(&self.inner.open).remove(&open.record.id);
                self.inner.dismantle(&open).await;
                Err(refusal)
            }
        }
    }

    /// Count `open` as ready and describe it.
    fn opened(&self, open: &Open) -> SessionInfo {
        open.ready.store(true, Ordering::SeqCst);
        metrics::gauge!(OPEN, "skill" => open.record.skill.clone()).increment(1.0);
        open.info()
    }

    /// Count `open` against the limits, or refuse it.
    fn reserve(&self, open: &Arc<Open>) -> Result<(), Refusal> {
        let limits = self.inner.limits;
        let mut sessions = lock(&self.inner.open);
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(Refusal::new(
                codes::HOST_SHUTTING_DOWN,
                "the host is shutting down and makes no sessions",
            ));
        }
        let owner = open.record.owner.as_deref();
        let owned = sessions
            .values()
            .filter(|o| o.record.owner.as_deref() == owner)
            .count();
        if sessions.len() >= limits.max_open {
            return Err(Refusal::new(
                codes::TOO_MANY_SESSIONS,
                format!(
                    "the host has {} open sessions, as many as it allows; end one or retry later",
                    sessions.len()
                ),
            ));
        }
        if owned >= limits.max_per_owner {
            return Err(Refusal::new(
                codes::TOO_MANY_SESSIONS,
                format!(
                    "this caller has {owned} open sessions, as many as one may have; end one or retry later"
                ),
            ));
        }
        sessions.insert(open.record.id.clone(), open.clone());
        Ok(())
    }

    /// Run `request` in session `open` of `skill`.
    pub(crate) async fn run(
        &self,
        skill: &Skill,
        open: &Arc<Open>,
        mut request: RunRequest,
    ) -> Result<SessionRun, Refusal> {
        let inner = &self.inner;
        let record = &open.record;
        if record.mode == SessionMode::Files {
            let id = request.request_id.clone();
            let spec = inner.spec(skill, record, Role::Invocation(&id));
            request.trailer_key = Some(new_key());
            let name = labels::container_name(skill.name(), Role::Invocation(&id));
            let outcome = run_container(&inner.engine, &inner.reaper, &name, &spec, request)
                .await
                .map_err(|e| Refusal::new(codes::ENGINE_ERROR, e.to_string()))?;
            return Ok(SessionRun {
                outcome,
                state_reset: false,
            });
        }
        let mut slot = open.slot.lock().await;
        if let Some(worker) = slot.worker.as_mut() {
            if !worker.ready_for_next() {
                inner.reaper.remove_later(&worker.name);
                slot.worker = None;
                slot.unreported = Some("its process ended between calls".into());
            }
        }
        if slot.worker.is_none() {
            slot.worker = Some(inner.start_worker(skill, record).await?);
        }
        if let Some(why) = slot.unreported.take() {
            metrics::counter!(RESETS, "skill" => record.skill.clone()).increment(1);
            return Err(Refusal::new(
                codes::SESSION_STATE_RESET,
                format!("session {}'s process was restarted ({why}): its files are kept, its variables are gone; nothing ran, call again", record.id),
            ));
        }
        let Some(worker) = slot.worker.as_mut() else {
            return Err(Refusal::new(
                codes::HOST_ERROR,
                "the session's worker is missing",
            ));
        };
        let exchanged = worker
            .exchange(&inner.engine, &request)
            .await
            .map_err(|e| Refusal::new(codes::ENGINE_ERROR, e.to_string()));
        let reusable = exchanged.as_ref().is_ok_and(|e| e.reusable);
        if !reusable {
            inner.reaper.remove_later(&worker.name);
            slot.worker = None;
            if exchanged.is_ok() {
                metrics::counter!(RESETS, "skill" => record.skill.clone()).increment(1);
            } else {
                // This call's result is the engine's failure: the next call says the
                // process was lost (and counts it).
                slot.unreported = Some("the engine failed the call before it".into());
            }
        }
        let exchange = exchanged?;
        Ok(SessionRun {
            outcome: exchange.outcome,
            state_reset: !reusable,
        })
    }

    /// End session `id` of `owner`.
    pub(crate) async fn close(&self, id: &str, owner: Option<&str>) -> Result<(), Refusal> {
        let open = self.get(id, owner)?;
        self.inner.end(&open, Ending::Closed).await;
        Ok(())
    }

    /// Adopt the sessions of host processes that are gone (see [`adopt`]).
    pub(crate) async fn adopt(&self, skills: &crate::catalog::Catalog) {
        adopt::adopt(&self.inner, skills).await
    }

    /// End every session and stop making new ones.
    pub(crate) async fn shutdown(&self) {
        self.inner.closed.store(true, Ordering::SeqCst);
        let spares = lock(&self.inner.spares).close();
        futures_util::future::join_all(spares.into_iter().map(|s| self.inner.discard(s))).await;
        let all: Vec<Arc<Open>> = lock(&self.inner.open).values().cloned().collect();
        let ends = all
            .iter()
            .map(|open| self.inner.end(open, Ending::Shutdown));
        futures_util::future::join_all(ends).await;
        drop(self.inner.ending.write().await);
        self.inner.reaper.settled().await;
        self.inner.reaper.shutdown().await;
    }

    /// Wait until the containers of finished calls are removed.
    pub(crate) async fn settled(&self) {
        self.inner.reaper.settled().await
    }
}

impl Inner {
    /// A container of the session: the skill's hardened configuration with the
    /// workspace volume and the session's variables. The command is the caller's to set.
    fn spec(&self, skill: &Skill, record: &Record, role: Role<'_>) -> ContainerSpec {
        let volume = record.volume();
        container_spec(&ContainerInputs {
            manifest: &skill.manifest,
            image: &record.image,
            run_as: record.run_as(),
            labels: record.labels(role, &self.instance),
            env: &record.env,
            workspace: Some(Workspace::Volume(&volume)),
            init_command: Some(&record.init_command),
            egress: None,
            holder: None,
        })
    }

    /// The volume, a keeper named `keeper` in `role`, and (for a `process` session) the
    /// worker; what was made before a failure is the caller's to dismantle.
    async fn make(
        &self,
        skill: &Skill,
        record: &Record,
        keeper: &str,
        role: Role<'_>,
    ) -> Result<Option<Worker>, Refusal> {
        let volume = TmpfsVolume {
            bytes: record.workspace_bytes,
            inodes: (record.workspace_bytes / BYTES_PER_INODE).max(1024),
            uid: record.uid,
            gid: record.gid,
        };
        self.engine
            .create_volume(
                &record.volume(),
                volume,
                record.volume_labels(&self.instance),
            )
            .await
            .map_err(engine_refusal("creating the session's workspace"))?;
        self.start_keeper(skill, record, keeper, role).await?;
        if record.mode == SessionMode::Process {
            return Ok(Some(self.start_worker(skill, record).await?));
        }
        Ok(None)
    }

    /// Create and start a keeper named `name` in `role` for `record`'s volume.
    async fn start_keeper(
        &self,
        skill: &Skill,
        record: &Record,
        name: &str,
        role: Role<'_>,
    ) -> Result<(), Refusal> {
        let mut spec = self.spec(skill, record, role);
        spec.cmd = Some(vec!["--hold".into()]);
        spec.interactive = false;
        self.reaper.track(name);
        let id = self
            .engine
            .create(name, &spec)
            .await
            .map_err(engine_refusal("creating the session's keeper"))?;
        self.engine
            .start(&id)
            .await
            .map_err(engine_refusal("starting the session's keeper"))
    }

    /// Start a worker of `record`'s session: the skill in serve mode under the engine's
    /// init, as a serve-mode skill's workers run.
    async fn start_worker(&self, skill: &Skill, record: &Record) -> Result<Worker, Refusal> {
        let mut spec = self.spec(skill, record, Role::SessionWorker(&record.id));
        spec.entrypoint = None;
        spec.cmd = None;
        spec.engine_init = true;
        spec.env
            .retain(|e| !e.starts_with(crate::run::container_spec::PRESTART_ENV));
        spec.env.push(format!("{SERVE_MODE_ENV}=serve"));
        let name = labels::container_name(&record.skill, Role::SessionWorker(&record.id));
        self.reaper.track(&name);
        Worker::start(&self.engine, &name, &spec)
            .await
            .map_err(|e| {
                self.reaper.remove_later(&name);
                Refusal::new(codes::ENGINE_ERROR, e.to_string())
            })
    }

    /// End `open`: its worker, its keeper, then its volume.
    async fn end(&self, open: &Arc<Open>, why: Ending) {
        let _ending = self.ending.read().await;
        let removed = lock(&self.open).remove(&open.record.id).is_some();
        if !removed {
            return;
        }
        if open.ready.load(Ordering::SeqCst) {
            let skill = open.record.skill.clone();
            metrics::gauge!(OPEN, "skill" => skill.clone()).decrement(1.0);
            metrics::counter!(ENDED, "skill" => skill, "why" => why.as_str()).increment(1);
        }
        tracing::info!(session = %open.record.id, skill = %open.record.skill, why = why.as_str(), "session ended");
        self.dismantle(open).await;
    }

    /// Remove what `open` is made of, whatever of it exists.
    async fn dismantle(&self, open: &Open) {
        let holder = lock(&open.record_holder).take();
        if let Some(holder) = holder {
            self.remove_container(&holder).await;
        }
        if let Ok(mut slot) = open.slot.try_lock() {
            if let Some(worker) = slot.worker.take() {
                self.remove_container(&worker.name).await;
            }
        } else {
            // A call holds the worker: it goes with the keeper's volume all the same.
            for found in self.session_containers(&open.record.id).await {
                self.remove_container(&found).await;
            }
        }
        self.remove_container(&open.keeper).await;
        self.remove_volume(&open.record.volume()).await;
    }

    async fn remove_container(&self, name: &str) {
        match self.engine.remove(name).await {
            Ok(()) => self.reaper.forget(name),
            Err(e) => {
                tracing::warn!(container = name, "cannot remove a session's container: {e}");
                self.reaper.remove_later(name);
            }
        }
    }

    /// Every container of session `id` this host made.
    async fn session_containers(&self, id: &str) -> Vec<String> {
        match self
            .engine
            .list(
                crate::engine::containers::Resource::Container,
                labels::SESSION,
                id,
            )
            .await
        {
            Ok(found) => found.into_iter().map(|c| c.name).collect(),
            Err(e) => {
                tracing::warn!(session = id, "cannot list a session's containers: {e}");
                Vec::new()
            }
        }
    }

    /// Remove a volume, waiting while a container that used it is still going.
    async fn remove_volume(&self, name: &str) {
        let deadline = tokio::time::Instant::now() + VOLUME_RELEASE;
        loop {
            match self.engine.remove_volume(name).await {
                Ok(()) => return,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    tracing::warn!(volume = name, "cannot remove a session's workspace: {e}");
                    return;
                }
                Err(_) => {
                    self.reaper.settled().await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }
}

impl Drop for Inner {
    /// A host dropped without [`Sessions::shutdown`] still leaves no session behind.
    fn drop(&mut self) {
        let open = std::mem::take(&mut *lock(&self.open));
        if open.is_empty() {
            return;
        }
        let mut leftovers = Leftovers::default();
        for session in open.values() {
            leftovers.containers.push(session.keeper.clone());
            leftovers
                .containers
                .extend(lock(&session.record_holder).take());
            if let Ok(mut slot) = session.slot.try_lock() {
                if let Some(worker) = slot.worker.take() {
                    leftovers.containers.push(worker.name.clone());
                }
            }
            leftovers.volumes.push(session.record.volume());
        }
        if !self.engine.remove_blocking(leftovers, Duration::ZERO) {
            tracing::error!("could not remove every session of this host");
        }
    }
}

fn engine_refusal(what: &'static str) -> impl FnOnce(CallError) -> Refusal {
    move |e| Refusal::new(codes::ENGINE_ERROR, format!("{what}: {e}"))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::engine::double::{FakeEngine, Script};
    use crate::manifest::Manifest;
    use crate::run::run_as::RunAs;

    /// Keepers hold; one-shot calls and workers answer each request by its id, a worker
    /// dies on `die` and hangs on `hang`.
    fn engine() -> Arc<FakeEngine> {
        FakeEngine::new(|spec, stdin| {
            if spec.cmd.as_deref() == Some(&["--hold".to_string()][..]) {
                return Script {
                    hang: true,
                    ..Default::default()
                };
            }
            // A one-shot call's stdin starts with its init's key line.
            let line = stdin
                .split(|b| *b == b'\n')
                .rfind(|l| !l.is_empty())
                .unwrap_or_default();
            let request: serde_json::Value =
                serde_json::from_slice(line).unwrap_or(serde_json::Value::Null);
            match request["action"].as_str() {
                Some("die") => Script {
                    exit: 1,
                    ..Default::default()
                },
                Some("hang") => Script {
                    hang: true,
                    ..Default::default()
                },
                _ => Script {
                    stdout: format!(
                        "{{\"type\":\"result\",\"id\":\"{}\",\"ok\":true,\"output\":{{}}}}\n",
                        request["id"].as_str().unwrap_or("")
                    )
                    .into_bytes(),
                    ..Default::default()
                },
            }
        })
    }

    fn skill(mode: &str) -> Skill {
        let text = format!(
            "name: py\nversion: 1.0.0\nprotocol: '^1'\nrun:\n  user: '10001:10001'\n  session: {{mode: {mode}, idle_timeout: 1m}}\nactions: {{run: {{}}, die: {{}}, hang: {{}}}}\n"
        );
        Skill {
            manifest: Manifest::parse(&text).unwrap(),
            dir: PathBuf::from("/skills/py"),
            relative_dir: PathBuf::from("py"),
        }
    }

    fn image() -> SkillImage {
        SkillImage {
            reference: "skill-py:abc".into(),
            init_command: Some(vec!["python3".into(), "/runner.py".into()]),
            init_recycles: true,
            run_as: RunAs {
                uid: 10001,
                gid: 10001,
            },
        }
    }

    fn sessions(fake: &Arc<FakeEngine>, max_per_owner: usize) -> Sessions {
        let engine: Containers = fake.clone();
        let limits = Limits {
            max_open: 8,
            max_per_owner,
            max_file_bytes: 1 << 20,
        };
        Sessions::new(engine, Instance::current(), limits, None)
    }

    fn terms(idle_ms: u64) -> Terms {
        Terms {
            idle_timeout: Duration::from_millis(idle_ms),
            lifetime: Duration::from_secs(60),
            env: BTreeMap::new(),
        }
    }

    fn request(id: &str, action: &str) -> RunRequest {
        let line = format!(
            "{{\"protocol\":\"1.0\",\"id\":\"{id}\",\"action\":\"{action}\",\"args\":{{}}}}\n"
        );
        let mut request = RunRequest::for_test(id, line.into_bytes());
        request.timeout = Duration::from_millis(300);
        request
    }

    #[tokio::test]
    async fn a_files_session_is_a_volume_a_holding_keeper_and_fresh_containers_on_it() {
        let fake = engine();
        let sessions = sessions(&fake, 8);
        let skill = skill("files");
        let info = sessions
            .open(&skill, &image(), terms(60_000), Some("alice".into()), 0)
            .await
            .unwrap();
        let volume = labels::session_volume(&info.id);
        assert_eq!(fake.volumes(), vec![volume.clone()]);
        let open = sessions.get(&info.id, Some("alice")).unwrap();
        let keeper = fake.spec(open.keeper()).unwrap();
        assert_eq!(keeper.cmd, Some(vec!["--hold".to_string()]));
        assert!(!keeper.interactive && keeper.confinement.read_only_root);
        assert_eq!(keeper.volumes[0].name, volume);
        assert_eq!(
            Record::from_labels(&keeper.labels)
                .unwrap()
                .owner
                .as_deref(),
            Some("alice")
        );

        let ran = sessions
            .run(&skill, &open, request("call-1", "run"))
            .await
            .unwrap();
        assert!(ran.outcome.decoded.result.is_some() && !ran.state_reset);
        let call = fake.spec("skillhost-py-call-1").unwrap();
        assert_eq!(call.volumes[0].name, volume);
        assert_eq!(call.labels[labels::SESSION], info.id);
        assert_eq!(call.cmd, Some(image().init_command.unwrap()));

        sessions.close(&info.id, Some("alice")).await.unwrap();
        sessions.settled().await;
        assert!(fake.volumes().is_empty());
        assert!(fake.containers().is_empty(), "{:?}", fake.containers());
        sessions.shutdown().await;
    }

    #[tokio::test]
    async fn another_owner_sees_nothing_and_the_limits_hold() {
        let fake = engine();
        let sessions = sessions(&fake, 1);
        let skill = skill("files");
        let info = sessions
            .open(&skill, &image(), terms(60_000), Some("alice".into()), 0)
            .await
            .unwrap();
        for owner in [Some("bob"), None] {
            let refused = sessions.get(&info.id, owner).unwrap_err();
            assert_eq!(refused.code, codes::UNKNOWN_SESSION);
            assert!(sessions.list(owner).is_empty());
            assert!(sessions.close(&info.id, owner).await.is_err());
        }
        let refused = sessions
            .open(&skill, &image(), terms(60_000), Some("alice".into()), 0)
            .await
            .unwrap_err();
        assert_eq!(refused.code, codes::TOO_MANY_SESSIONS);
        assert_eq!(sessions.list(Some("alice")).len(), 1);
        sessions.shutdown().await;
        assert!(fake.volumes().is_empty() && fake.containers().is_empty());
    }

    #[tokio::test]
    async fn a_lost_process_is_said_once_and_then_replaced() {
        let fake = engine();
        let sessions = sessions(&fake, 8);
        let skill = skill("process");
        let info = sessions
            .open(&skill, &image(), terms(60_000), None, 0)
            .await
            .unwrap();
        let open = sessions.get(&info.id, None).unwrap();
        let ok = sessions
            .run(&skill, &open, request("r-1", "run"))
            .await
            .unwrap();
        assert!(!ok.state_reset);
        // A call that hangs past its deadline costs the process, and says so.
        let hung = sessions
            .run(&skill, &open, request("r-2", "hang"))
            .await
            .unwrap();
        assert!(hung.state_reset);
        let next = sessions
            .run(&skill, &open, request("r-3", "run"))
            .await
            .unwrap();
        assert!(
            !next.state_reset,
            "the loss was reported with the call that caused it"
        );
        // A process that dies is replaced; the call that finds it gone is refused.
        let died = sessions
            .run(&skill, &open, request("r-4", "die"))
            .await
            .unwrap();
        assert!(died.state_reset);
        let workers = |fake: &FakeEngine| {
            fake.containers()
                .iter()
                .filter(|name| name.contains("-sw-"))
                .count()
        };
        sessions.settled().await;
        assert_eq!(workers(&fake), 0, "the dead worker is removed");
        let _ = sessions
            .run(&skill, &open, request("r-5", "run"))
            .await
            .unwrap();
        assert_eq!(workers(&fake), 1);
        sessions.shutdown().await;
        assert!(fake.volumes().is_empty() && fake.containers().is_empty());
    }

    #[tokio::test]
    async fn a_spare_is_taken_without_a_create_and_its_record_follows() {
        let fake = engine();
        let sessions = sessions(&fake, 8);
        let skill = skill("process");
        sessions.refill(&skill, &image(), 1);
        while sessions.spares_ready("py") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let before = fake.calls().len();
        let info = sessions
            .open(&skill, &image(), terms(60_000), Some("alice".into()), 1)
            .await
            .unwrap();
        let on_the_callers_path = &fake.calls()[before..];
        assert!(
            !on_the_callers_path.iter().any(|c| c.starts_with("create ")),
            "{on_the_callers_path:?}"
        );
        let open = sessions.get(&info.id, Some("alice")).unwrap();
        assert!(open.keeper().contains("-ss-"), "the spare's keeper");
        let ran = sessions
            .run(&skill, &open, request("r-1", "run"))
            .await
            .unwrap();
        assert!(!ran.state_reset, "the spare's worker answers");
        // The record goes on a container of its own, and a new spare is made.
        while lock(&open.record_holder).is_none() || sessions.spares_ready("py") == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let holder = lock(&open.record_holder).clone().unwrap();
        let record = Record::from_labels(&fake.spec(&holder).unwrap().labels).unwrap();
        assert_eq!(
            (record.id.as_str(), record.owner.as_deref()),
            (info.id.as_str(), Some("alice"))
        );
        sessions.close(&info.id, Some("alice")).await.unwrap();
        assert!(
            fake.spec(&holder).is_none(),
            "the record goes with the session"
        );
        sessions.shutdown().await;
        assert!(
            fake.volumes().is_empty() && fake.containers().is_empty(),
            "{:?}",
            fake.containers()
        );
    }

    #[tokio::test]
    async fn an_idle_session_ends_on_its_own_but_not_while_busy() {
        let fake = engine();
        let sessions = sessions(&fake, 8);
        let skill = skill("files");
        let idle = sessions
            .open(&skill, &image(), terms(300), None, 0)
            .await
            .unwrap();
        let busy = sessions
            .open(&skill, &image(), terms(300), None, 0)
            .await
            .unwrap();
        let held = sessions.get(&busy.id, None).unwrap().busy();
        tokio::time::sleep(Duration::from_millis(1200)).await;
        assert!(sessions.get(&idle.id, None).is_err(), "expired");
        assert!(sessions.get(&busy.id, None).is_ok(), "a call is under way");
        assert_eq!(fake.volumes(), vec![labels::session_volume(&busy.id)]);
        drop(held);
        sessions.shutdown().await;
        assert!(fake.volumes().is_empty());
    }
}
