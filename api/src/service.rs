//! The bodies of the HTTP service's `/v1` API (`skillhost serve`), besides the
//! [`crate::InvocationResult`] an invocation answers with.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::InvocationResult;

/// The body of `POST /v1/skills/{name}/actions/{action}:invoke`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct InvokeRequest {
    /// The action's arguments, checked against its input schema. Default: `{}`.
    #[serde(default = "empty_object")]
    pub args: Value,
    /// A deadline shorter than the manifest's timeout, in milliseconds (never longer).
    /// A whole number; `1500.0` is read as `1500`, as JSON Schema's `integer` allows.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "whole_milliseconds"
    )]
    pub timeout_ms: Option<u64>,
    /// Environment variables for the skill; each name must be in the manifest's `run.env`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

/// A non-negative whole number, written as an integer or as a float with no fraction.
pub(crate) fn whole_milliseconds<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<u64>, D::Error> {
    use serde::de::Error;
    match Option::<serde_json::Number>::deserialize(d)? {
        None => Ok(None),
        Some(n) => match (n.as_u64(), n.as_f64()) {
            (Some(whole), _) => Ok(Some(whole)),
            (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= u64::MAX as f64 => {
                Ok(Some(f as u64))
            }
            _ => Err(D::Error::custom(format!(
                "a duration must be a whole number of milliseconds, not {n}"
            ))),
        },
    }
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

impl InvokeRequest {
    /// A request with these arguments and the manifest's defaults.
    pub fn new(args: Value) -> Self {
        InvokeRequest {
            args,
            timeout_ms: None,
            env: BTreeMap::new(),
        }
    }
}

/// `GET /v1/skills`: every skill the service can run.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SkillList {
    /// The skills, by name.
    pub skills: Vec<SkillInfo>,
}

impl SkillList {
    /// A list of these skills.
    pub fn new(skills: Vec<SkillInfo>) -> Self {
        SkillList { skills }
    }
}

/// One skill, with what a client needs to call it (or to describe it to a model as a
/// tool): its actions and their JSON Schemas.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct SkillInfo {
    /// The skill's name.
    pub name: String,
    /// Its version (semver).
    pub version: String,
    /// What it does.
    pub description: String,
    /// The content hash of its sources, when it could be computed.
    pub hash: Option<String>,
    /// Its image, `skill-<name>:<hash>`.
    pub image: Option<String>,
    /// Whether that image is present on the engine; `None` when unknown.
    pub image_present: Option<bool>,
    /// Why the hash or the image is unknown.
    pub problem: Option<String>,
    /// Its actions, by name.
    pub actions: BTreeMap<String, ActionInfo>,
}

impl SkillInfo {
    /// A skill with its actions and nothing known about its image.
    pub fn new(
        name: impl Into<String>,
        version: impl Into<String>,
        description: impl Into<String>,
        actions: BTreeMap<String, ActionInfo>,
    ) -> Self {
        SkillInfo {
            name: name.into(),
            version: version.into(),
            description: description.into(),
            hash: None,
            image: None,
            image_present: None,
            problem: None,
            actions,
        }
    }
}

/// One action of a skill.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ActionInfo {
    /// What it does.
    pub description: String,
    /// The JSON Schema its arguments must match, when declared.
    pub input: Option<Value>,
    /// The JSON Schema of its output, when declared.
    pub output: Option<Value>,
    /// Its name as a tool for a model (`{skill}__{action}`, see [`crate::tools`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// What its manifest makes true of it as a tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<crate::tools::ToolAnnotations>,
}

impl ActionInfo {
    /// An action with these schemas.
    pub fn new(
        description: impl Into<String>,
        input: Option<Value>,
        output: Option<Value>,
    ) -> Self {
        ActionInfo {
            description: description.into(),
            input,
            output,
            tool: None,
            annotations: None,
        }
    }
}

/// Where an asynchronous invocation stands (`GET /v1/invocations/{id}`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum InvocationState {
    /// Still running; ask again.
    Running,
    /// Finished: the result is there, whatever its status.
    Finished,
    /// Cancelled by `DELETE`; its container was removed.
    Cancelled,
}

/// An asynchronous invocation: the answer to `Prefer: respond-async` (202) and to
/// `GET`/`DELETE /v1/invocations/{id}`.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Invocation {
    /// The invocation's id, also its result's `id`.
    pub id: String,
    /// The skill called.
    pub skill: String,
    /// The action called.
    pub action: String,
    /// Where it stands.
    pub state: InvocationState,
    /// The result, once finished.
    pub result: Option<InvocationResult>,
}

impl Invocation {
    /// An invocation in `state`, with its result if it has one.
    pub fn new(
        id: impl Into<String>,
        skill: impl Into<String>,
        action: impl Into<String>,
        state: InvocationState,
        result: Option<InvocationResult>,
    ) -> Self {
        Invocation {
            id: id.into(),
            skill: skill.into(),
            action: action.into(),
            state,
            result,
        }
    }
}

/// The body of every service error that is not an invocation's result: a missing token,
/// an unknown route or invocation, a service still starting (`host_starting`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceError {
    /// What went wrong.
    pub error: ServiceErrorDetail,
}

/// The inside of a [`ServiceError`].
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ServiceErrorDetail {
    /// A stable code, e.g. `unauthorized`, `not_found`, `no_such_invocation`.
    pub code: String,
    /// What happened, for people.
    pub message: String,
}

impl ServiceError {
    /// An error with this code and message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError {
            error: ServiceErrorDetail {
                code: code.into(),
                message: message.into(),
            },
        }
    }
}

/// `GET /readyz`: whether this service should get calls, and if not, why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Readiness {
    /// Ready for calls.
    pub ready: bool,
    /// What keeps it from being ready: the engine, a missing image, draining.
    pub problems: Vec<String>,
}

impl Readiness {
    /// Ready when there are no problems.
    pub fn new(problems: Vec<String>) -> Self {
        Readiness {
            ready: problems.is_empty(),
            problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_invoke_request_defaults_its_args_and_refuses_unknown_fields() {
        let request: InvokeRequest = serde_json::from_str("{}").unwrap();
        assert_eq!(request.args, serde_json::json!({}));
        assert_eq!(request.timeout_ms, None);
        let err = serde_json::from_str::<InvokeRequest>(r#"{"arg": {}}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `arg`"), "{err}");
    }

    #[test]
    fn a_timeout_is_a_whole_number_written_either_way() {
        let read = |text: &str| serde_json::from_str::<InvokeRequest>(text).map(|r| r.timeout_ms);
        assert_eq!(read(r#"{"timeout_ms": 1500}"#).unwrap(), Some(1500));
        assert_eq!(read(r#"{"timeout_ms": 1500.0}"#).unwrap(), Some(1500));
        assert_eq!(read(r#"{"timeout_ms": null}"#).unwrap(), None);
        for bad in ["1.5", "-1"] {
            let err = read(&format!(r#"{{"timeout_ms": {bad}}}"#)).unwrap_err();
            assert!(err.to_string().contains("whole number"), "{bad}: {err}");
        }
        let err = read(r#"{"timeout_ms": "1s"}"#).unwrap_err();
        assert!(err.to_string().contains("expected a JSON number"), "{err}");
    }
}
