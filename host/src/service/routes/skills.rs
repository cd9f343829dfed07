//! `GET /v1/skills` and `GET /v1/skills/{name}`: what a client needs to call a skill, or
//! to hand its actions to a model as tool definitions.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use skillhost_api::tools::tool_definitions;
use skillhost_api::{ServiceError, SkillInfo, SkillList, ToolFormat, ToolList};

use crate::catalog::Skill;
use crate::service::http::error_response;
use crate::service::AppState;

/// Every skill: versions, hashes, image state, and each action's schemas.
#[utoipa::path(get, path = "/v1/skills", tag = "skills", security(("bearer" = [])),
    responses((status = 200, description = "The skills this service runs", body = SkillList)))]
pub(crate) async fn list(State(state): State<Arc<AppState>>) -> Json<SkillList> {
    let mut skills = Vec::new();
    for skill in state.host.catalog().skills.values() {
        skills.push(describe(&state, skill).await);
    }
    Json(SkillList::new(skills))
}

/// One skill.
#[utoipa::path(get, path = "/v1/skills/{name}", tag = "skills", security(("bearer" = [])),
    params(("name" = String, Path, description = "The skill's name")),
    responses(
        (status = 200, description = "The skill", body = SkillInfo),
        (status = 404, description = "No skill of that name", body = ServiceError)))]
pub(crate) async fn show(State(state): State<Arc<AppState>>, Path(name): Path<String>) -> Response {
    match state.host.catalog().get(&name) {
        Some(skill) => Json(describe(&state, skill).await).into_response(),
        None => error_response(
            StatusCode::NOT_FOUND,
            skillhost_api::codes::UNKNOWN_SKILL,
            format!(
                "no skill named {name:?}; this service has: {}",
                state
                    .host
                    .catalog()
                    .skills
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    }
}

async fn describe(state: &AppState, skill: &Skill) -> SkillInfo {
    let mut info = crate::tools::skill_info(&skill.manifest);
    match state.host.image_state(&skill.manifest.name).await {
        Ok(image) => {
            info.hash = Some(image.hash);
            info.image = Some(image.image);
            info.image_present = Some(image.present);
        }
        Err(refusal) => info.problem = Some(refusal.message),
    }
    info
}

/// `GET /v1/tools`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(crate) struct ToolsQuery {
    /// `generic` (the default), `openai`, `anthropic` or `mcp`.
    format: Option<String>,
}

/// Every action of every skill as a tool definition for a model, in the shape of the
/// API that takes it; a tool's name is `{skill}__{action}`.
#[utoipa::path(get, path = "/v1/tools", tag = "skills", security(("bearer" = [])),
    params(ToolsQuery),
    responses(
        (status = 200, description = "One tool definition per action", body = ToolList),
        (status = 400, description = "An unknown format", body = ServiceError)))]
pub(crate) async fn tools(
    State(state): State<Arc<AppState>>,
    Query(query): Query<ToolsQuery>,
) -> Response {
    let name = query.format.as_deref().unwrap_or("generic");
    let Some((_, format)) = ToolFormat::ALL.iter().find(|(known, _)| *known == name) else {
        let known: Vec<&str> = ToolFormat::ALL.iter().map(|(known, _)| *known).collect();
        return error_response(
            StatusCode::BAD_REQUEST,
            skillhost_api::codes::INVALID_REQUEST,
            format!(
                "unknown tool format {name:?}: use one of {}",
                known.join(", ")
            ),
        );
    };
    let skills = crate::tools::catalog_info(state.host.catalog());
    Json(ToolList::new(*format, tool_definitions(&skills, *format))).into_response()
}
