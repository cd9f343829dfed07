//! The typed reports the CLI prints with `--format json`, besides the invocation result.

use serde::{Deserialize, Serialize};

/// `skillhost list --format json`: the skills found and the manifests that failed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListReport {
    /// Every skill found, by name.
    pub skills: Vec<ListedSkill>,
    /// Skill directories whose manifest failed to load.
    pub broken: Vec<BrokenSkill>,
}

impl ListReport {
    /// A report of these skills and broken manifests.
    pub fn new(skills: Vec<ListedSkill>, broken: Vec<BrokenSkill>) -> Self {
        ListReport { skills, broken }
    }
}

/// One skill as `list` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ListedSkill {
    /// The skill's name.
    pub name: String,
    /// Its manifest's version.
    pub version: String,
    /// Its manifest's description.
    pub description: String,
    /// Its directory, relative to the skills directory it was found in.
    pub dir: String,
    /// Its actions, sorted.
    pub actions: Vec<String>,
    /// The full content hash, when it could be computed.
    pub hash: Option<String>,
    /// `skill-<name>:<hash>`, when the hash could be computed.
    pub image: Option<String>,
    /// Whether that image is present in the engine; `None` when that is unknown (no
    /// engine, or no hash).
    pub present: Option<bool>,
    /// Why the hash could not be computed.
    pub problem: Option<String>,
}

impl ListedSkill {
    /// A skill with its manifest's facts and nothing known of its image yet.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
        dir: impl Into<String>,
        actions: Vec<String>,
    ) -> Self {
        ListedSkill {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            dir: dir.into(),
            actions,
            hash: None,
            image: None,
            present: None,
            problem: None,
        }
    }
}

/// A skill directory whose manifest failed to load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BrokenSkill {
    /// The whole error, as the CLI prints it.
    pub error: String,
    /// Each problem, located.
    pub problems: Vec<ProblemReport>,
}

impl BrokenSkill {
    /// A broken manifest with its rendered error and its problems.
    pub fn new(error: impl Into<String>, problems: Vec<ProblemReport>) -> Self {
        BrokenSkill {
            error: error.into(),
            problems,
        }
    }
}

/// One thing wrong with a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ProblemReport {
    /// The dotted field path, e.g. `run.limits.memory`; empty for the whole document.
    pub field: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl ProblemReport {
    /// A problem at `field`, at `position` (line, column) when known.
    pub fn new(
        field: impl Into<String>,
        position: Option<(usize, usize)>,
        message: impl Into<String>,
    ) -> Self {
        ProblemReport {
            field: field.into(),
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            message: message.into(),
        }
    }
}

/// What a command prints on stdout with `--format json` when it fails before it has a
/// report of its own: `{"error": {"message": ..., "exit_code": ...}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorReport {
    /// The failure.
    pub error: ErrorDetail,
}

/// The failure inside an [`ErrorReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ErrorDetail {
    /// What went wrong, naming what was wrong.
    pub message: String,
    /// The process's exit code, one of [`crate::exit_code`].
    pub exit_code: i32,
}

impl ErrorReport {
    /// A report of `message`, ending the process with `exit_code`.
    pub fn new(message: impl Into<String>, exit_code: i32) -> Self {
        ErrorReport {
            error: ErrorDetail {
                message: message.into(),
                exit_code,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_keep_their_documented_json_shape() {
        let mut skill = ListedSkill::new("echo", "1.0.0", "Echo.", "echo", vec!["say".into()]);
        skill.present = Some(true);
        let broken = BrokenSkill::new(
            "bad/skill.yaml:1:7: name: invalid",
            vec![ProblemReport::new("name", Some((1, 7)), "invalid")],
        );
        let json = serde_json::to_value(ListReport::new(vec![skill], vec![broken])).unwrap();
        assert_eq!(json["skills"][0]["present"], true);
        assert_eq!(json["skills"][0]["hash"], serde_json::Value::Null);
        assert_eq!(json["broken"][0]["problems"][0]["line"], 1);
        assert_eq!(json["broken"][0]["problems"][0]["column"], 7);
        let error = serde_json::to_value(ErrorReport::new("no engine", 3)).unwrap();
        assert_eq!(
            error,
            serde_json::json!({"error": {"message": "no engine", "exit_code": 3}})
        );
    }
}
