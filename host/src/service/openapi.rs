//! The API's OpenAPI 3.1 document, generated from the handlers and the `skillhost-api`
//! types. `docs/openapi.json` is its committed copy; a test fails when they drift.

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{AnyOfBuilder, Object, Type};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Ref, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::routes::{invocations, invoke, probes, sessions, skills};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "skillhost",
        description = "Run untrusted skills in hardened Docker containers. The unix socket needs no token (its mode is 0600); a TCP listener needs a bearer token on every route but /healthz and /readyz. /mcp (not described here) is the Model Context Protocol's Streamable HTTP endpoint, behind the same caller check: every skill action a tool.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    components(schemas(skillhost_api::ServiceError)),
    paths(
        skills::list,
        skills::show,
        skills::tools,
        invoke::invoke,
        invocations::show,
        invocations::delete,
        sessions::create,
        sessions::list,
        sessions::show,
        sessions::keep_alive,
        sessions::delete,
        sessions::invoke,
        sessions::list_files,
        sessions::get_file,
        sessions::put_file,
        sessions::delete_file,
        probes::healthz,
        probes::readyz,
        probes::metrics,
        probes::openapi,
    ),
    modifiers(&BearerToken, &WhileStarting),
    tags(
        (name = "skills", description = "The skills this service runs, with their actions' JSON Schemas, and the actions as tool definitions for a model"),
        (name = "invoke", description = "Run an action"),
        (name = "invocations", description = "Asynchronous invocations"),
        (name = "sessions", description = "Sessions: a skill's sandbox that keeps its files (and, for process sessions, its interpreter) across calls, for the caller that made it"),
        (name = "probes", description = "Health, readiness, metrics and this document"),
    )
)]
struct ApiDoc;

struct BearerToken;

impl Modify for BearerToken {
    /// The bearer scheme, and its 401 on every operation that needs it (on TCP).
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        let unauthorized = ResponseBuilder::new()
            .description("On TCP: no bearer token, or one not in the tokens file (`missing_token`, `invalid_token`)")
            .content(
                "application/json",
                Content::new(Some(Ref::from_schema_name("ServiceError"))),
            )
            .build();
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                if operation.security.is_some() {
                    operation
                        .responses
                        .responses
                        .insert("401".into(), unauthorized.clone().into());
                }
            }
        }
    }
}

struct WhileStarting;

impl Modify for WhileStarting {
    /// A service still starting answers every operation behind the caller check 503
    /// `host_starting`, a `ServiceError`: added to each such operation's 503. Beside the
    /// result an invocation's 503 carries it is `anyOf`, not `oneOf`: a result, with its
    /// `error` object, matches the `ServiceError` schema too.
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        const STARTING: &str = "`host_starting` (a ServiceError): the service is still starting (pulling its images, starting its host); nothing ran, retry after the Retry-After seconds";
        let service_error = || RefOr::Ref(Ref::from_schema_name("ServiceError"));
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
            ];
            for operation in operations.into_iter().flatten() {
                if operation.security.is_none() {
                    continue;
                }
                let responses = &mut operation.responses.responses;
                let Some(RefOr::T(response)) = responses.get_mut("503") else {
                    responses.insert(
                        "503".into(),
                        ResponseBuilder::new()
                            .description(STARTING)
                            .content("application/json", Content::new(Some(service_error())))
                            .header(
                                "Retry-After",
                                HeaderBuilder::new()
                                    .schema(Object::with_type(Type::Integer))
                                    .description(Some("Seconds to wait"))
                                    .build(),
                            )
                            .build()
                            .into(),
                    );
                    continue;
                };
                response.description = format!("{}; or {STARTING}", response.description);
                if let Some(content) = response.content.get_mut("application/json") {
                    let is_service_error = matches!(&content.schema,
                        Some(RefOr::Ref(r)) if r.ref_location.ends_with("/ServiceError"));
                    if !is_service_error {
                        if let Some(schema) = content.schema.take() {
                            content.schema = Some(RefOr::T(
                                AnyOfBuilder::new()
                                    .item(schema)
                                    .item(service_error())
                                    .into(),
                            ));
                        }
                    }
                }
            }
        }
    }
}

/// The OpenAPI document, as pretty JSON with a final newline.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"cannot render the OpenAPI document: {e}\"}}"));
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED: &str = "../docs/openapi.json";

    /// `SKILLHOST_BLESS=1 cargo test -p skillhost openapi` rewrites the committed copy.
    #[test]
    fn the_committed_openapi_document_matches_the_code() {
        let generated = document();
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(COMMITTED);
        if std::env::var_os("SKILLHOST_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/openapi.json differs from what the code generates; run `SKILLHOST_BLESS=1 cargo test -p skillhost openapi` and commit it"
        );
    }

    #[test]
    fn the_document_is_openapi_3_1_with_every_route() {
        let doc: serde_json::Value = serde_json::from_str(&document()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
        for path in [
            "/v1/skills",
            "/v1/skills/{name}",
            "/v1/skills/{name}/actions/{action}:invoke",
            "/v1/invocations/{id}",
            "/healthz",
            "/readyz",
            "/metrics",
            "/openapi.json",
        ] {
            assert!(doc["paths"].get(path).is_some(), "{path} missing");
        }
        assert!(doc["components"]["schemas"]
            .get("InvocationResult")
            .is_some());
    }
}
