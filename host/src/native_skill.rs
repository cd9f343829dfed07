//! Native mode: a trusted skill's `cdylib` loaded into the host process through
//! skill-sdk's C ABI. **There is no sandbox**: the skill has the host's rights and memory,
//! a crash in it is a crash of the host, and a deadline cannot stop it (the host stops
//! waiting; the call runs on to its end on a blocking thread). For development and tests.

use std::path::{Path, PathBuf};

use libloading::Library;
use skill_sdk::native::{ABI_VERSION, ABI_VERSION_SYMBOL, FREE_SYMBOL, INVOKE_SYMBOL};

type VersionFn = unsafe extern "C" fn() -> u32;
type InvokeFn = unsafe extern "C" fn(*const u8, usize, *mut usize) -> *mut u8;
type FreeFn = unsafe extern "C" fn(*mut u8, usize);

/// A loaded native skill library. Never unloaded: libraries with thread-locals cannot be
/// unloaded safely, and a host loads each at most once.
pub struct NativeLibrary {
    path: PathBuf,
    invoke: InvokeFn,
    free: FreeFn,
    _library: Library,
}

/// Why a library cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum NativeError {
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
    pub fn load(path: &Path) -> Result<NativeLibrary, NativeError> {
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
        let found = unsafe { version() };
        if found != ABI_VERSION {
            return Err(NativeError::AbiVersion { path, found });
        }
        let invoke: InvokeFn = unsafe { library.get::<InvokeFn>(INVOKE_SYMBOL) }
            .map(|f| *f)
            .map_err(|e| missing(INVOKE_SYMBOL, e))?;
        let free: FreeFn = unsafe { library.get::<FreeFn>(FREE_SYMBOL) }
            .map(|f| *f)
            .map_err(|e| missing(FREE_SYMBOL, e))?;
        Ok(NativeLibrary {
            path,
            invoke,
            free,
            _library: library,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Answer one request line with the frames the skill wrote. The answer is copied
    /// out and handed back to the library, which allocated it.
    pub fn call(&self, request_line: &[u8]) -> Vec<u8> {
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
