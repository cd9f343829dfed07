//! Loading and validating `skill.yaml`.
//!
//! Loading happens in two passes. Serde checks shapes, types, units and unknown keys, and
//! its errors carry the YAML position. A second pass checks bounds and the rules that
//! span fields (an example naming an unknown action), then finds each failing field's
//! position in the source so that every error names file, field path and line:column.

pub mod egress;
mod locate;
mod model;
mod shape;
pub mod units;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::{
    Action, Build, Example, Limits, Manifest, Matching, Mode, Native, Network, Recycle, Run, Serve,
    SessionMode, SessionSettings, User, WorkspaceMode, DEFAULT_USER,
};
pub use validate::is_skill_name as is_valid_name;

/// The manifest's file name inside a skill directory.
pub const MANIFEST_FILE: &str = "skill.yaml";

/// Manifests larger than this are refused unread: no honest manifest comes close.
pub const MAX_MANIFEST_BYTES: u64 = 1024 * 1024;

/// The 1-based line on which example `index` of the manifest text `text` starts, when the
/// source says.
pub fn example_line(text: &str, index: usize) -> Option<usize> {
    let path = [
        locate::Segment::Key("examples".into()),
        locate::Segment::Index(index),
    ];
    locate::Locator::new(text)
        .position(&path)
        .map(|(line, _)| line)
}

/// The 1-based line and column of the field at the dotted `field` path (mapping keys
/// only), when the source says.
pub fn position_of(text: &str, field: &[&str]) -> Option<(usize, usize)> {
    let path: Vec<_> = field
        .iter()
        .map(|key| locate::Segment::Key((*key).to_string()))
        .collect();
    locate::Locator::new(text).position(&path)
}

/// The protocol version this host speaks, matched against each manifest's `protocol`.
pub fn host_protocol_version() -> semver::Version {
    let (major, minor, patch) = skill_sdk::protocol::PROTOCOL_SEMVER;
    semver::Version::new(major, minor, patch)
}

/// One thing wrong with a manifest, located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted field path, e.g. `run.limits.memory` or `examples[0].action`; empty for the
    /// document as a whole.
    pub field: String,
    /// 1-based line and column, when known.
    pub position: Option<(usize, usize)>,
    /// What is wrong.
    pub message: String,
}

/// Why a manifest could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The file cannot be read.
    #[error("{}: cannot read manifest: {source}", path.display())]
    Read {
        /// The manifest.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any honest manifest.
    #[error("{}: manifest is {size} bytes, over the {MAX_MANIFEST_BYTES}-byte limit", path.display())]
    TooLarge {
        /// The manifest.
        path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// The manifest does not parse or does not validate.
    #[error("{}", render_problems(path, problems))]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn render_problems(path: &Path, problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| {
            let at = match p.position {
                Some((line, col)) => format!("{}:{line}:{col}", path.display()),
                None => path.display().to_string(),
            };
            let field = if p.field.is_empty() {
                String::new()
            } else {
                format!(" {}:", p.field)
            };
            format!("{at}:{field} {}", p.message)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

impl ManifestError {
    /// The manifest that failed.
    pub fn path(&self) -> &Path {
        match self {
            ManifestError::Read { path, .. }
            | ManifestError::TooLarge { path, .. }
            | ManifestError::Invalid { path, .. } => path,
        }
    }

    /// The problems found, for callers that report them structurally.
    pub fn problems(&self) -> Vec<Problem> {
        match self {
            ManifestError::Invalid { problems, .. } => problems.clone(),
            other => vec![Problem {
                field: String::new(),
                position: None,
                message: other.to_string(),
            }],
        }
    }
}

impl Manifest {
    /// Read, parse and validate the manifest at `path`.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let read_err = |source| ManifestError::Read {
            path: path.to_path_buf(),
            source,
        };
        let size = std::fs::metadata(path).map_err(read_err)?.len();
        if size > MAX_MANIFEST_BYTES {
            return Err(ManifestError::TooLarge {
                path: path.to_path_buf(),
                size,
            });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        let invalid = |problems| ManifestError::Invalid {
            path: path.to_path_buf(),
            problems,
        };
        let text = std::str::from_utf8(&bytes).map_err(|e| invalid(vec![not_utf8(&bytes, &e)]))?;
        Manifest::parse(text).map_err(invalid)
    }

    /// The manifest a skill image carries in its `io.skillhost.manifest` label (JSON, which
    /// is YAML too), validated again: an image is not trusted to hold a valid one.
    pub fn from_image_label(text: &str) -> Result<Manifest, Vec<Problem>> {
        Manifest::parse(text)
    }

    /// Parse and validate manifest text, returning every problem found.
    pub fn parse(text: &str) -> Result<Manifest, Vec<Problem>> {
        if text.len() as u64 > MAX_MANIFEST_BYTES {
            return Err(vec![Problem {
                field: String::new(),
                position: None,
                message: format!("manifest is over the {MAX_MANIFEST_BYTES}-byte limit"),
            }]);
        }
        if text.trim().is_empty() {
            return Err(vec![Problem {
                field: String::new(),
                position: None,
                message: "manifest is empty: it needs at least name, version, protocol and actions"
                    .into(),
            }]);
        }
        shape::check(text).map_err(|problem| vec![problem])?;
        let manifest = deserialize(text)?;
        let problems = validate::validate(&manifest);
        if problems.is_empty() {
            return Ok(manifest);
        }
        let locator = locate::Locator::new(text);
        Err(problems
            .into_iter()
            .map(|(path, message)| Problem {
                position: locator.position(&path),
                field: locate::render(&path),
                message,
            })
            .collect())
    }

    /// The image repository for this skill.
    pub fn repository(&self) -> String {
        format!("skill-{}", self.name)
    }
}

/// Where a manifest stops being UTF-8: the line and column of the first bad byte, which
/// the message names in hex.
fn not_utf8(bytes: &[u8], e: &std::str::Utf8Error) -> Problem {
    let valid = &bytes[..e.valid_up_to()];
    let line = valid.iter().filter(|b| **b == b'\n').count() + 1;
    let line_start = valid.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    // Columns count characters, as the YAML positions do; the valid prefix decodes.
    let column = String::from_utf8_lossy(&valid[line_start..])
        .chars()
        .count()
        + 1;
    let bad = &bytes[e.valid_up_to()..];
    let shown: Vec<String> = bad
        .iter()
        .take(e.error_len().unwrap_or(bad.len()).min(4))
        .map(|b| format!("0x{b:02x}"))
        .collect();
    Problem {
        field: String::new(),
        position: Some((line, column)),
        message: format!(
            "the manifest is not UTF-8: byte {} begins no character",
            shown.join(" ")
        ),
    }
}

fn deserialize(text: &str) -> Result<Manifest, Vec<Problem>> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|err| {
        let field = match err.path().to_string() {
            root if root == "." || root == "?" => String::new(),
            path => path,
        };
        let inner = err.into_inner();
        let mut position = inner.location().map(|l| (l.line(), l.column()));
        if inner.to_string().starts_with("duplicate") {
            position = locate::duplicate_key(text).or(position);
        }
        vec![Problem {
            position,
            message: strip_path(&field, &strip_location(&inner.to_string())),
            field,
        }]
    })
}

/// serde_norway appends " at line L column C"; the position is reported separately.
fn strip_location(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) if message[i..].contains(" column ") => message[..i].to_string(),
        _ => message.to_string(),
    }
}

/// serde_norway prefixes nested errors with its own path; ours is reported separately.
fn strip_path(field: &str, message: &str) -> String {
    match message.split_once(": ") {
        Some((head, rest)) if !head.contains(' ') && field.starts_with(head) => rest.to_string(),
        _ => message.to_string(),
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((line, col)) = self.position {
            write!(f, "{line}:{col}: ")?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// The JSON Schema of `skill.yaml` itself (draft 2020-12), generated from the model: what
/// `skillhost schema manifest` prints and `docs/manifest.schema.json` holds, for editors
/// with a YAML language server. Rules that span fields (a serve-mode skill may not
/// prewarm, say) are checked by skillhost alone.
pub fn json_schema() -> String {
    let mut schema = schemars::schema_for!(Manifest);
    schema.insert("title".into(), "skillhost skill.yaml".into());
    schema.insert(
        "description".into(),
        "A skill's manifest: its name, version, protocol, build, run limits, actions and examples. See docs/manifest.md.".into(),
    );
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests;
