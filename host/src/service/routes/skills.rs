//! `GET /v1/skills` and `GET /v1/skills/{name}`: what a client needs to call a skill, or
//! to hand its actions to a model as tool definitions.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use skillhost_api::{ActionInfo, ServiceError, SkillInfo, SkillList};

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
    let manifest = &skill.manifest;
    let actions = manifest
        .actions
        .iter()
        .map(|(name, action)| {
            let info = ActionInfo::new(
                &action.description,
                Some(action.input.clone()),
                action.output.clone(),
            );
            (name.clone(), info)
        })
        .collect();
    let mut info = SkillInfo::new(
        &manifest.name,
        manifest.version.to_string(),
        &manifest.description,
        actions,
    );
    match state.host.image_state(&manifest.name).await {
        Ok(image) => {
            info.hash = Some(image.hash);
            info.image = Some(image.image);
            info.image_present = Some(image.present);
        }
        Err(refusal) => info.problem = Some(refusal.message),
    }
    info
}
