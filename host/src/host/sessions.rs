//! Sessions through the library: [`Host::open_session`] makes one and hands back a
//! [`Session`], whose calls and file operations run in it until it is closed or expires.
//!
//! ```no_run
//! # async fn demo(host: &skillhost::Host) -> Result<(), Box<dyn std::error::Error>> {
//! use skillhost::api::SessionRequest;
//! use serde_json::json;
//!
//! let session = host.open_session(SessionRequest::new("python")).await?;
//! session.invoke("run", json!({"code": "x = 41"})).await;
//! let result = session.invoke("run", json!({"code": "print(x + 1)"})).await;
//! assert_eq!(result.output.unwrap()["stdout"], "42\n");
//! session.write_file("data.csv", &b"a,b\n1,2\n"[..]).await?;
//! let listing = session.list_files().await?;
//! session.close().await?;
//! # Ok(()) }
//! ```
//!
//! A caller other than the library (the service's tokens) names itself as `owner`: a
//! session is found only by the owner that made it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use skillhost_api::{
    codes, FileList, InvocationPath, InvocationResult, SessionCall, SessionInfo, SessionRequest,
};
use tokio::io::AsyncRead;

use super::Host;
use crate::invoke::{admission, classify, telemetry, InvokeOptions};
use crate::session::{files, terms, Download, FileError, Open};
use crate::vocab::Refusal;

/// An open session of a [`Host`]: its calls and files. Closing it is explicit
/// ([`Session::close`]); dropping the handle leaves the session open until it expires.
#[derive(Debug, Clone)]
pub struct Session<'h> {
    host: &'h Host,
    id: String,
    owner: Option<String>,
}

impl Host {
    /// Make a session for the library's caller.
    pub async fn open_session(&self, request: SessionRequest) -> Result<Session<'_>, Refusal> {
        let info = self.open_session_as(None, request).await?;
        Ok(Session {
            host: self,
            id: info.id,
            owner: None,
        })
    }

    /// Make a session for `owner` (`None`: the library's caller): admitted against the
    /// manifest's `run.session`, the image resolved (built where this host builds), the
    /// workspace and keeper made, and a `process` session's worker started.
    pub async fn open_session_as(
        &self,
        owner: Option<&str>,
        request: SessionRequest,
    ) -> Result<SessionInfo, Refusal> {
        self.images.refuse_unverified(&request.skill)?;
        let skill = self.catalog.get(&request.skill).ok_or_else(|| {
            Refusal::new(
                codes::UNKNOWN_SKILL,
                format!("no skill named {:?}", request.skill),
            )
        })?;
        let terms = terms::admit(
            skill,
            request.idle_timeout_ms.map(Duration::from_millis),
            request.max_lifetime_ms.map(Duration::from_millis),
            request.env,
        )?;
        self.images.check_runtime(skill).await?;
        let image = self.images.resolve(skill).await?;
        // As many spare sessions as the skill has prewarmed containers.
        let spares = self.router.prewarm_target(skill);
        self.sessions
            .open(skill, &image, terms, owner.map(str::to_string), spares)
            .await
    }

    /// Session `id` of `owner`; unknown (`unknown_session`) when it is another owner's.
    pub fn session_as(&self, owner: Option<&str>, id: &str) -> Result<Session<'_>, Refusal> {
        self.sessions.get(id, owner)?;
        Ok(Session {
            host: self,
            id: id.to_string(),
            owner: owner.map(str::to_string),
        })
    }

    /// Session `id` of the library's caller.
    pub fn session(&self, id: &str) -> Result<Session<'_>, Refusal> {
        self.session_as(None, id)
    }

    /// The open sessions of `owner`, oldest first.
    pub fn sessions(&self, owner: Option<&str>) -> Vec<SessionInfo> {
        self.sessions.list(owner)
    }

    /// Open sessions of every owner.
    pub fn open_sessions(&self) -> usize {
        self.sessions.count()
    }

    /// The largest upload or download of a session's file.
    pub fn max_file_bytes(&self) -> u64 {
        self.sessions.limits().max_file_bytes
    }

    /// Admit and run one call in session `open`.
    async fn run_in_session(
        &self,
        open: &Arc<Open>,
        result: &mut InvocationResult,
        args: Value,
        options: &InvokeOptions,
    ) -> Result<(), Refusal> {
        if !options.env.is_empty() || options.workspace.is_some() || options.native {
            return Err(Refusal::new(
                codes::INVALID_SESSION,
                "a call in a session takes the session's environment and workspace: give env when the session is made, and no workspace or native mode",
            ));
        }
        let skill = self.catalog.get(&result.skill).ok_or_else(|| {
            Refusal::new(
                codes::UNKNOWN_SKILL,
                format!(
                    "the session's skill {:?} is no longer on this host",
                    result.skill
                ),
            )
        })?;
        let admitted = admission::admit(
            &self.catalog,
            &self.schemas,
            self.max_input_bytes,
            &result.skill,
            &result.action,
            &args,
            options,
        )?;
        result.image = Some(open.record.image.clone());
        let request = self.request(&result.id, &result.action, args, &admitted, options);
        let _busy = open.busy();
        let ran = self.sessions.run(skill, open, request).await?;
        classify::fill(
            result,
            &ran.outcome,
            admitted.timeout,
            admitted.output_limit,
        );
        self.keep_output_contract(result);
        if ran.state_reset {
            result.session = Some(SessionCall::new(&open.record.id, true));
        }
        Ok(())
    }
}

impl<'h> Session<'h> {
    /// Its id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn open(&self) -> Result<Arc<Open>, Refusal> {
        self.host.sessions.get(&self.id, self.owner.as_deref())
    }

    fn open_for_files(&self) -> Result<Arc<Open>, FileError> {
        self.open()
            .map_err(|refusal| FileError::new(refusal.code, refusal.message))
    }

    /// What it is and when it ends.
    pub fn info(&self) -> Result<SessionInfo, Refusal> {
        Ok(self.open()?.info())
    }

    /// Reset its idle clock.
    pub fn keep_alive(&self) -> Result<SessionInfo, Refusal> {
        let open = self.open()?;
        open.touch();
        Ok(open.info())
    }

    /// Invoke `action` in the session with the manifest's defaults.
    pub async fn invoke(&self, action: &str, args: Value) -> InvocationResult {
        self.invoke_with(action, args, InvokeOptions::default())
            .await
    }

    /// Invoke with per-call options (a timeout, progress, an id; a session's calls take
    /// no environment or workspace of their own). Never fails: every outcome is a result,
    /// which names the session.
    pub async fn invoke_with(
        &self,
        action: &str,
        args: Value,
        options: InvokeOptions,
    ) -> InvocationResult {
        let started = Instant::now();
        let id = options
            .id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let host = self.host;
        let (skill, ran) = match self.open() {
            Ok(open) => {
                let mut result = InvocationResult::new(id.clone(), &open.record.skill, action);
                let ran = host
                    .run_in_session(&open, &mut result, args, &options)
                    .await;
                (Some(result), ran)
            }
            Err(refusal) => (None, Err(refusal)),
        };
        let mut result = skill.unwrap_or_else(|| InvocationResult::new(id, "", action));
        if let Err(refusal) = ran {
            refusal.apply_to(&mut result);
        }
        result.path = InvocationPath::Session;
        if result.session.is_none() {
            let lost = result
                .error
                .as_ref()
                .is_some_and(|e| e.code == codes::SESSION_STATE_RESET);
            result.session = Some(SessionCall::new(&self.id, lost));
        }
        result.duration_ms = started.elapsed().as_millis() as u64;
        telemetry::record(&host.catalog, &result, started.elapsed());
        result
    }

    /// Write `body` to `path` in the workspace (missing directories are made), replacing
    /// any file there once the whole body is in; the bytes written.
    pub async fn write_file(
        &self,
        path: &str,
        body: impl AsyncRead + Unpin + Send,
    ) -> Result<u64, FileError> {
        let open = self.open_for_files()?;
        let _busy = open.busy();
        let engine = self.host.sessions.engine();
        let max = self.host.max_file_bytes();
        files::write(&engine, open.keeper(), &open.user(), path, max, body).await
    }

    /// Read the regular file at `path`: its size and mode, then its bytes as a stream.
    pub async fn read_file(&self, path: &str) -> Result<Download, FileError> {
        let open = self.open_for_files()?;
        let _busy = open.busy();
        let engine = self.host.sessions.engine();
        let max = self.host.max_file_bytes();
        files::read(&engine, open.keeper(), &open.user(), path, max).await
    }

    /// Every entry of the workspace (see [`files::MAX_LISTED`]).
    pub async fn list_files(&self) -> Result<FileList, FileError> {
        let open = self.open_for_files()?;
        let _busy = open.busy();
        let engine = self.host.sessions.engine();
        files::list(&engine, open.keeper(), &open.user()).await
    }

    /// Remove the file, link or empty directory at `path`.
    pub async fn delete_file(&self, path: &str) -> Result<(), FileError> {
        let open = self.open_for_files()?;
        let _busy = open.busy();
        let engine = self.host.sessions.engine();
        files::delete(&engine, open.keeper(), &open.user(), path).await
    }

    /// End the session: its containers and its workspace are removed.
    pub async fn close(self) -> Result<(), Refusal> {
        self.host
            .sessions
            .close(&self.id, self.owner.as_deref())
            .await
    }
}
