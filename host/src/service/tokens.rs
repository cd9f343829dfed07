//! Bearer tokens for TCP callers. The tokens file holds only each token's SHA-256, so a
//! leaked file lets nobody in; a presented token is hashed and compared with every entry
//! in constant time. A token may carry its own concurrency quota.
//!
//! ```toml
//! [[token]]
//! name = "agent"                 # shown in logs, never the token itself
//! sha256 = "9f86d08...0a08"      # of the token, in hex (`skillhost token NAME` makes one)
//! max-in-flight = 4              # optional: calls this token may run at once
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;

/// A tokens file that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokensError {
    /// The file could not be read.
    #[error("cannot read the tokens file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid.
    #[error("the tokens file {path} is not valid: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the entry.
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    token: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct TokenEntry {
    name: String,
    sha256: String,
    max_in_flight: Option<usize>,
}

/// Who made a call: a token's name and its quota, or the unix socket's owner.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The token's name, or `local` for the unix socket.
    pub(crate) name: Arc<str>,
    /// The token's own concurrency quota, if it has one.
    pub(crate) quota: Option<Arc<Semaphore>>,
}

impl Caller {
    /// Whoever can open the unix socket.
    pub(crate) fn local() -> Caller {
        Caller {
            name: Arc::from("local"),
            quota: None,
        }
    }
}

/// The tokens a TCP listener accepts.
#[derive(Debug)]
pub(crate) struct Tokens {
    entries: Vec<([u8; 32], Caller)>,
}

impl Tokens {
    /// Read and check a tokens file.
    pub(crate) fn load(path: &Path) -> Result<Tokens, TokensError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokensError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Tokens::parse(&text).map_err(|message| TokensError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    fn parse(text: &str) -> Result<Tokens, String> {
        let file: TokensFile = toml::from_str(text).map_err(|e| e.to_string())?;
        if file.token.is_empty() {
            return Err("it has no [[token]] entry, so no caller could get in".into());
        }
        let mut entries: Vec<([u8; 32], Caller)> = Vec::new();
        for (index, entry) in file.token.into_iter().enumerate() {
            let at = format!("token #{} ({:?})", index + 1, entry.name);
            if entry.name.trim().is_empty() {
                return Err(format!("{at}: its name is empty"));
            }
            let mut digest = [0u8; 32];
            hex::decode_to_slice(entry.sha256.trim(), &mut digest).map_err(|_| {
                format!("{at}: sha256 must be 64 hex digits (the token's SHA-256, not the token)")
            })?;
            if entries.iter().any(|(_, c)| *c.name == *entry.name) {
                return Err(format!("{at}: the name is used twice"));
            }
            if entry.max_in_flight == Some(0) {
                return Err(format!("{at}: max-in-flight must be at least 1"));
            }
            entries.push((
                digest,
                Caller {
                    name: Arc::from(entry.name),
                    quota: entry.max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
                },
            ));
        }
        Ok(Tokens { entries })
    }

    /// The caller a presented token belongs to. Every entry is compared, in constant
    /// time, whether or not an earlier one matched.
    pub(crate) fn verify(&self, presented: &str) -> Option<Caller> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (stored, caller) in &self.entries {
            if bool::from(stored.ct_eq(&digest)) {
                found = Some(caller.clone());
            }
        }
        found
    }
}

/// A new random token and the entry that admits it.
pub fn new_token(name: &str, max_in_flight: Option<usize>) -> (String, String) {
    let token = format!(
        "skh_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let digest = hex::encode(Sha256::digest(token.as_bytes()));
    let quota = max_in_flight.map_or(String::new(), |n| format!("max-in-flight = {n}\n"));
    let name = toml::Value::String(name.to_string());
    (
        token,
        format!("[[token]]\nname = {name}\nsha256 = \"{digest}\"\n{quota}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_token_is_admitted_by_its_entry_and_no_other_is() {
        let (token, entry) = new_token("agent", Some(2));
        let tokens = Tokens::parse(&entry).unwrap();
        let caller = tokens.verify(&token).unwrap();
        assert_eq!(&*caller.name, "agent");
        assert_eq!(caller.quota.unwrap().available_permits(), 2);
        assert!(tokens.verify("skh_wrong").is_none());
        assert!(tokens.verify("").is_none());
        assert!(!entry.contains(&token), "the entry holds only the hash");
    }

    #[test]
    fn bad_files_name_the_entry_and_the_problem() {
        let err = Tokens::parse("").unwrap_err();
        assert!(err.contains("no [[token]]"), "{err}");
        let err = Tokens::parse("[[token]]\nname = \"a\"\nsha256 = \"secret\"\n").unwrap_err();
        assert!(
            err.contains("token #1 (\"a\")") && err.contains("64 hex"),
            "{err}"
        );
        let (_, entry) = new_token("a", None);
        let err = Tokens::parse(&format!("{entry}{entry}")).unwrap_err();
        assert!(err.contains("token #2") && err.contains("twice"), "{err}");
        let err = Tokens::parse("[[token]]\nname = \"a\"\nsha = \"x\"\n").unwrap_err();
        assert!(err.contains("sha"), "{err}");
    }
}
