//! Skill actions as tools for a model: one name scheme for the MCP server, `GET
//! /v1/tools`, `GET /v1/skills` and the clients, and each chat API's shape of a tool
//! definition.
//!
//! A tool's name is `{skill}__{action}` (two underscores). Skill names are `[a-z0-9-]` and
//! never hold `_`, so the first `__` splits a name back without doubt. Every chat API
//! takes such a name (`^[a-zA-Z0-9_-]{1,64}$`) when it fits in [`MAX_TOOL_NAME`]
//! characters, which the host checks of every manifest.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::service::{ActionInfo, SkillInfo};

/// What stands between a tool name's skill and its action.
pub const TOOL_NAME_SEPARATOR: &str = "__";

/// The longest tool name the chat APIs take (OpenAI's and Anthropic's limit).
pub const MAX_TOOL_NAME: usize = 64;

/// The tool name of `action` of `skill`.
pub fn tool_name(skill: &str, action: &str) -> String {
    format!("{skill}{TOOL_NAME_SEPARATOR}{action}")
}

/// The skill and action a tool name stands for; `None` for a name of any other shape.
pub fn split_tool_name(name: &str) -> Option<(&str, &str)> {
    let (skill, action) = name.split_once(TOOL_NAME_SEPARATOR)?;
    (!skill.is_empty() && !action.is_empty()).then_some((skill, action))
}

/// What a tool definition's manifest makes true of it (MCP's tool annotations; each a
/// hint to the client, absent where the manifest says nothing).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ToolAnnotations {
    /// The action changes nothing outside its own call: no network, no writable
    /// workspace, no session.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_only_hint: Option<bool>,
    /// The action may overwrite or delete what it can write (a read-write workspace).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destructive_hint: Option<bool>,
    /// The action reaches beyond the host (any network); false with no network at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub open_world_hint: Option<bool>,
}

/// The shapes of a tool definition (`GET /v1/tools?format=`).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ToolFormat {
    /// `{name, description, parameters}`.
    #[default]
    Generic,
    /// `{"type": "function", "function": {name, description, parameters}}` (OpenAI's
    /// Chat Completions).
    Openai,
    /// `{name, description, input_schema}` (Anthropic's Messages API).
    Anthropic,
    /// `{name, description, inputSchema, outputSchema?, annotations?}` (an MCP server's
    /// `tools/list`).
    Mcp,
}

impl ToolFormat {
    /// Every format, by its name.
    pub const ALL: [(&'static str, ToolFormat); 4] = [
        ("generic", ToolFormat::Generic),
        ("openai", ToolFormat::Openai),
        ("anthropic", ToolFormat::Anthropic),
        ("mcp", ToolFormat::Mcp),
    ];
}

/// Every action of `skills` as a tool definition in `format`, in the skills' order and
/// each skill's actions' order.
pub fn tool_definitions(skills: &[SkillInfo], format: ToolFormat) -> Vec<Value> {
    skills
        .iter()
        .flat_map(|skill| {
            skill
                .actions
                .iter()
                .map(move |(action, info)| tool_definition(skill, action, info, format))
        })
        .collect()
}

/// One action as a tool definition in `format`. The description is the action's, or its
/// skill's when the action has none; the input schema an open object when none is
/// declared.
pub fn tool_definition(
    skill: &SkillInfo,
    action: &str,
    info: &ActionInfo,
    format: ToolFormat,
) -> Value {
    let name = tool_name(&skill.name, action);
    let description = if info.description.is_empty() {
        &skill.description
    } else {
        &info.description
    };
    let schema = info
        .input
        .clone()
        .unwrap_or_else(|| json!({"type": "object"}));
    match format {
        ToolFormat::Generic => {
            json!({"name": name, "description": description, "parameters": schema})
        }
        ToolFormat::Openai => json!({"type": "function", "function": {
            "name": name, "description": description, "parameters": schema}}),
        ToolFormat::Anthropic => {
            json!({"name": name, "description": description, "input_schema": schema})
        }
        ToolFormat::Mcp => {
            let mut tool = json!({"name": name, "description": description, "inputSchema": schema});
            if let Some(output) = &info.output {
                tool["outputSchema"] = output.clone();
            }
            if let Some(annotations) = &info.annotations {
                tool["annotations"] = json!(annotations);
            }
            tool
        }
    }
}

/// `GET /v1/tools`: every action as a tool definition.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct ToolList {
    /// The shape the definitions are in.
    pub format: ToolFormat,
    /// The definitions, one per action.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<Object>))]
    pub tools: Vec<Value>,
}

impl ToolList {
    /// These definitions, in `format`.
    pub fn new(format: ToolFormat, tools: Vec<Value>) -> Self {
        ToolList { format, tools }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn names_split_back_at_the_first_separator() {
        assert_eq!(tool_name("echo", "say"), "echo__say");
        assert_eq!(split_tool_name("echo__say"), Some(("echo", "say")));
        // An action may hold `_` and even `__`; a skill never does.
        assert_eq!(
            split_tool_name("my-skill__read__all"),
            Some(("my-skill", "read__all"))
        );
        for bad in ["echo", "__say", "echo__", "", "echo_say"] {
            assert_eq!(split_tool_name(bad), None, "{bad}");
        }
    }

    fn skill() -> SkillInfo {
        let mut actions = BTreeMap::new();
        let mut say = ActionInfo::new(
            "Say it back",
            Some(json!({"type": "object", "properties": {"text": {"type": "string"}}})),
            Some(json!({"type": "object"})),
        );
        say.annotations = Some(ToolAnnotations {
            read_only_hint: Some(true),
            destructive_hint: None,
            open_world_hint: Some(false),
        });
        actions.insert("say".to_string(), say);
        actions.insert("ping".to_string(), ActionInfo::new("", None, None));
        SkillInfo::new("echo", "1.0.0", "Echoes", actions)
    }

    #[test]
    fn each_format_has_its_apis_shape() {
        let skills = [skill()];
        let generic = tool_definitions(&skills, ToolFormat::Generic);
        assert_eq!(
            generic[0],
            json!({"name": "echo__ping", "description": "Echoes", "parameters": {"type": "object"}})
        );
        let openai = tool_definitions(&skills, ToolFormat::Openai);
        assert_eq!(openai[1]["type"], "function");
        assert_eq!(openai[1]["function"]["name"], "echo__say");
        assert_eq!(
            openai[1]["function"]["parameters"]["properties"]["text"]["type"],
            "string"
        );
        let anthropic = tool_definitions(&skills, ToolFormat::Anthropic);
        assert_eq!(anthropic[1]["input_schema"]["type"], "object");
        let mcp = tool_definitions(&skills, ToolFormat::Mcp);
        assert_eq!(mcp[1]["inputSchema"]["type"], "object");
        assert_eq!(mcp[1]["outputSchema"], json!({"type": "object"}));
        assert_eq!(
            mcp[1]["annotations"],
            json!({"readOnlyHint": true, "openWorldHint": false})
        );
        assert!(mcp[0].get("outputSchema").is_none());
        assert!(mcp[0].get("annotations").is_none());
    }
}
