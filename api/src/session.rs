//! Sessions: the bodies of `/v1/sessions` and what the library's `Session` reports. A
//! session keeps a skill's files (and, in `process` mode, its interpreter's memory)
//! across calls, for one caller.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The body of `POST /v1/sessions`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct SessionRequest {
    /// The skill; its manifest must declare `run.session`.
    pub skill: String,
    /// End the session after this long without a call or file operation; at most the
    /// manifest's ceiling. Default: the manifest's `run.session.idle_timeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// End the session this long after it was made, however busy; at most the manifest's
    /// ceiling. Default: the manifest's `run.session.lifetime`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "crate::service::whole_milliseconds"
    )]
    pub max_lifetime_ms: Option<u64>,
    /// Environment variables for every container of the session; each name must be in
    /// the manifest's `run.env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

impl SessionRequest {
    /// A session of `skill` with the manifest's defaults.
    pub fn new(skill: impl Into<String>) -> Self {
        SessionRequest {
            skill: skill.into(),
            ..SessionRequest::default()
        }
    }
}

/// `files` or `process`, as the skill's manifest says.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum SessionKind {
    /// Files persist; each call is a fresh container.
    Files,
    /// Files and the skill's process (its variables) persist.
    Process,
}

/// A session as its owner sees it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Its id, in every path of `/v1/sessions/{id}`.
    pub id: String,
    /// The skill.
    pub skill: String,
    /// `skill-<name>:<hash>`: every container of the session runs it.
    pub image: String,
    /// What persists across its calls.
    pub mode: SessionKind,
    /// When it was made, in milliseconds since the Unix epoch.
    pub created_at_ms: u64,
    /// Its idle timeout.
    pub idle_timeout_ms: u64,
    /// Its lifetime.
    pub max_lifetime_ms: u64,
    /// When it ends unless a call or file operation comes first (ms since the epoch).
    pub idle_deadline_ms: u64,
    /// When it ends whatever happens (ms since the epoch).
    pub lifetime_deadline_ms: u64,
    /// The workspace's size: writes past it fail with `ENOSPC` inside.
    pub workspace_bytes: u64,
}

impl SessionInfo {
    /// Session `id` of `skill` in `image`, its times and size zero until set.
    pub fn new(
        id: impl Into<String>,
        skill: impl Into<String>,
        image: impl Into<String>,
        mode: SessionKind,
    ) -> Self {
        SessionInfo {
            id: id.into(),
            skill: skill.into(),
            image: image.into(),
            mode,
            created_at_ms: 0,
            idle_timeout_ms: 0,
            max_lifetime_ms: 0,
            idle_deadline_ms: 0,
            lifetime_deadline_ms: 0,
            workspace_bytes: 0,
        }
    }
}

/// The body of `GET /v1/sessions`: the caller's own sessions.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SessionList {
    /// Every open session of the caller, oldest first.
    pub sessions: Vec<SessionInfo>,
}

impl SessionList {
    /// A list of these sessions.
    pub fn new(sessions: Vec<SessionInfo>) -> Self {
        SessionList { sessions }
    }
}

/// What a workspace entry is. Links, FIFOs, sockets and devices are listed, never read.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Directory,
    /// A symbolic link (never followed).
    Symlink,
    /// A named pipe.
    Fifo,
    /// A unix socket.
    Socket,
    /// A device node.
    Device,
}

/// One entry of a session's workspace.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FileEntry {
    /// Relative to the workspace, `/`-separated.
    pub path: String,
    /// What it is.
    pub kind: FileKind,
    /// Bytes (a file's length; what the filesystem says for the rest).
    pub size: u64,
    /// Permission bits (`0o644` is 420); set-id and sticky bits are never reported.
    pub mode: u32,
    /// Last modified, in milliseconds since the Unix epoch.
    pub modified_ms: u64,
}

/// The body of `GET /v1/sessions/{id}/files`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FileList {
    /// Every entry, depth first, names sorted; names that are not UTF-8 are left out.
    pub files: Vec<FileEntry>,
    /// True when the workspace held more entries than a listing returns.
    pub truncated: bool,
}

impl FileList {
    /// A listing of these entries.
    pub fn new(files: Vec<FileEntry>, truncated: bool) -> Self {
        FileList { files, truncated }
    }
}
