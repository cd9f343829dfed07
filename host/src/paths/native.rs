//! Native mode: a trusted skill's `cdylib` loaded into the host process through
//! skill-sdk's C ABI. **There is no sandbox**: the skill has the host's rights and memory,
//! a crash in it is a crash of the host, and a deadline cannot stop it (the host stops
//! waiting; the call runs on to its end on a blocking thread). For development and tests.
//!
//! Calling into a loaded library is `unsafe` by nature: its symbols are trusted to have
//! the types skill-sdk's `export_native!` gives them, which the ABI version check guards.

// Loading a library and calling its C functions cannot be done without `unsafe`.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use libloading::Library;
use skill_sdk::native::{ABI_VERSION, ABI_VERSION_SYMBOL, FREE_SYMBOL, INVOKE_SYMBOL};

use crate::catalog::Skill;
use crate::run::container::{HostKill, RunOutcome, RunRequest};
use crate::run::frame_reader::FrameReader;
use crate::sync::lock;

type VersionFn = unsafe extern "C" fn() -> u32;
type InvokeFn = unsafe extern "C" fn(*const u8, usize, *mut usize) -> *mut u8;
type FreeFn = unsafe extern "C" fn(*mut u8, usize);

/// A loaded native skill library. Never unloaded: libraries with thread-locals cannot be
/// unloaded safely, and a host loads each at most once.
#[derive(Debug)]
pub(crate) struct NativeLibrary {
    invoke: InvokeFn,
    free: FreeFn,
    _library: Library,
}

/// Why a library cannot be used.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NativeError {
    #[error("native mode is off in this host's config (allow_native); it runs skills unsandboxed, in process")]
    NotAllowed,
    #[error("skill {0} declares no native library (manifest key native.library)")]
    NotDeclared(String),
    #[error("cannot load {path}: {source}")]
    Load {
        path: PathBuf,
        source: libloading::Error,
    },
    #[error("{path} does not export {symbol}: it is not a skill-sdk native library ({source})")]
    Symbol {
        path: PathBuf,
        symbol: String,
        source: libloading::Error,
    },
    #[error("{path} speaks native ABI version {found}; this host speaks {ABI_VERSION}: rebuild it against this skill-sdk")]
    AbiVersion { path: PathBuf, found: u32 },
}

impl NativeLibrary {
    /// Load `path` and check its ABI version before looking at anything else in it.
    pub(crate) fn load(path: &Path) -> Result<NativeLibrary, NativeError> {
        let path = path.to_path_buf();
        // SAFETY: loading runs the library's initialisers; native mode trusts the skill.
        let library = unsafe { Library::new(&path) }.map_err(|source| NativeError::Load {
            path: path.clone(),
            source,
        })?;
        let missing = |name: &[u8], source| NativeError::Symbol {
            path: path.clone(),
            symbol: String::from_utf8_lossy(name).into_owned(),
            source,
        };
        // SAFETY: the symbol types are those skill-sdk's export_native! defines; the ABI
        // version check below guards against a library built from another contract.
        let version: VersionFn = unsafe { library.get::<VersionFn>(ABI_VERSION_SYMBOL) }
            .map(|f| *f)
            .map_err(|e| missing(ABI_VERSION_SYMBOL, e))?;
        // SAFETY: `version` takes nothing and returns a u32 in every ABI version.
        let found = unsafe { version() };
        if found != ABI_VERSION {
            return Err(NativeError::AbiVersion { path, found });
        }
        // SAFETY: the ABI version matched, so these symbols have the types of this ABI.
        let invoke: InvokeFn = unsafe { library.get::<InvokeFn>(INVOKE_SYMBOL) }
            .map(|f| *f)
            .map_err(|e| missing(INVOKE_SYMBOL, e))?;
        // SAFETY: as above.
        let free: FreeFn = unsafe { library.get::<FreeFn>(FREE_SYMBOL) }
            .map(|f| *f)
            .map_err(|e| missing(FREE_SYMBOL, e))?;
        Ok(NativeLibrary {
            invoke,
            free,
            _library: library,
        })
    }

    /// Answer one request line with the frames the skill wrote. The answer is copied
    /// out and handed back to the library, which allocated it.
    pub(crate) fn call(&self, request_line: &[u8]) -> Vec<u8> {
        let mut len = 0usize;
        // SAFETY: the request buffer is valid for its length; the library fills `len`.
        let answer = unsafe { (self.invoke)(request_line.as_ptr(), request_line.len(), &mut len) };
        if answer.is_null() {
            return Vec::new();
        }
        // SAFETY: the library returned `len` bytes at `answer`, valid until freed.
        let copied = unsafe { std::slice::from_raw_parts(answer, len) }.to_vec();
        // SAFETY: freed once, by the side that allocated it.
        unsafe { (self.free)(answer, len) };
        copied
    }
}

/// The native libraries a host loaded, each once, when native mode is allowed.
#[derive(Debug)]
pub(crate) struct NativeLibraries {
    allowed: bool,
    loaded: Mutex<HashMap<String, Arc<NativeLibrary>>>,
}

impl NativeLibraries {
    pub(crate) fn new(allowed: bool) -> Self {
        NativeLibraries {
            allowed,
            loaded: Mutex::default(),
        }
    }

    /// The skill's library, loaded on first use, when this host and the manifest allow
    /// native mode.
    pub(crate) fn get(&self, skill: &Skill) -> Result<Arc<NativeLibrary>, NativeError> {
        if !self.allowed {
            return Err(NativeError::NotAllowed);
        }
        let declared = skill
            .manifest
            .native
            .as_ref()
            .ok_or_else(|| NativeError::NotDeclared(skill.name().to_string()))?;
        let mut loaded = lock(&self.loaded);
        if let Some(library) = loaded.get(skill.name()) {
            return Ok(library.clone());
        }
        let path = skill.dir.join(&declared.library);
        let library = Arc::new(NativeLibrary::load(&path)?);
        tracing::warn!(skill = skill.name(), path = %path.display(), "loaded a native skill library: it runs unsandboxed, in this process");
        loaded.insert(skill.name().to_string(), library.clone());
        Ok(library)
    }
}

/// The exit code reported when a native call panicked outside the skill's own handling.
const CRASHED_EXIT: i64 = 101;

/// The runtime shut down under a native call: nothing is known of its answer.
#[derive(Debug, thiserror::Error)]
#[error("the native call was cancelled: the host is shutting down")]
pub(crate) struct Cancelled;

/// Run a request through a native library on a blocking thread. Past the deadline the
/// host stops waiting; the call itself cannot be stopped and runs on.
pub(crate) async fn run(
    library: Arc<NativeLibrary>,
    request: RunRequest,
) -> Result<RunOutcome, Cancelled> {
    let line = request.stdin;
    let call = tokio::task::spawn_blocking(move || library.call(&line));
    let mut reader = FrameReader::new(&request.request_id, request.output_limit);
    let (host_kill, exit_code) = match tokio::time::timeout(request.timeout, call).await {
        Err(_) => (Some(HostKill::Timeout), None),
        Ok(Err(joined)) if joined.is_panic() => (None, Some(CRASHED_EXIT)),
        Ok(Err(_)) => return Err(Cancelled),
        Ok(Ok(answer)) => {
            let pushed = reader.push(&answer);
            if let Some(callback) = &request.on_progress {
                pushed.progress.iter().for_each(|p| callback(p));
            }
            (pushed.over_limit.then_some(HostKill::OutputLimit), None)
        }
    };
    Ok(RunOutcome {
        exit_code,
        oom_killed: false,
        host_kill,
        decoded: reader.finish(),
        logs: Vec::new(),
        logs_truncated: false,
        stderr_bytes: 0,
        startup: Duration::ZERO,
        init_report: None,
        egress: Default::default(),
    })
}
