//! Every finished invocation, counted through the `metrics` facade: a no-op until a
//! recorder is installed (the service installs a Prometheus one).
//!
//! Labels name only skills and actions the catalog knows, so a caller sending made-up
//! names cannot grow the set of series without bound.

use std::time::Duration;

use skillhost_api::{codes, InvocationResult, Status};

use crate::catalog::Catalog;

/// Invocations, by skill, action, status and path.
pub(crate) const INVOCATIONS: &str = "skillhost_invocations_total";
/// Seconds from the call to its result, by skill, action and path.
pub(crate) const DURATION: &str = "skillhost_invocation_duration_seconds";
/// Calls refused before any container, by code.
pub(crate) const REJECTED: &str = "skillhost_rejected_total";
/// Calls that failed for the engine, by code.
pub(crate) const ENGINE_ERRORS: &str = "skillhost_engine_errors_total";

/// The label a name gets: itself when the catalog knows it, otherwise `_unknown`.
fn known<'a>(catalog: &Catalog, skill: &'a str, action: &'a str) -> (&'a str, &'a str) {
    match catalog.get(skill) {
        Some(found) if found.manifest.actions.contains_key(action) => (skill, action),
        Some(_) => (skill, "_unknown"),
        None => ("_unknown", "_unknown"),
    }
}

/// Count `result`, which took `elapsed`.
pub(crate) fn record(catalog: &Catalog, result: &InvocationResult, elapsed: Duration) {
    let (skill, action) = known(catalog, &result.skill, &result.action);
    let path = result.path.as_str();
    metrics::counter!(INVOCATIONS,
        "skill" => skill.to_string(),
        "action" => action.to_string(),
        "status" => result.status.as_str(),
        "path" => path)
    .increment(1);
    metrics::histogram!(DURATION,
        "skill" => skill.to_string(),
        "action" => action.to_string(),
        "path" => path)
    .record(elapsed.as_secs_f64());
    let code = result.error.as_ref().map(|e| e.code.as_str());
    match (result.status, code) {
        (Status::Rejected, Some(code)) => {
            metrics::counter!(REJECTED, "code" => known_code(code)).increment(1)
        }
        (Status::InfrastructureError, Some(code))
            if code == codes::ENGINE_ERROR || code == codes::ENGINE_STOPPED =>
        {
            metrics::counter!(ENGINE_ERRORS, "code" => known_code(code)).increment(1)
        }
        _ => {}
    }
}

/// A host code as a static label; anything else as `other`.
fn known_code(code: &str) -> &'static str {
    codes::ALL
        .iter()
        .find(|(known, _)| *known == code)
        .map_or("other", |(known, _)| known)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_host_codes_become_labels() {
        assert_eq!(known_code("unknown_skill"), "unknown_skill");
        assert_eq!(known_code("made-up"), "other");
    }

    #[test]
    fn unknown_names_share_one_label() {
        let catalog = Catalog::default();
        assert_eq!(known(&catalog, "x", "y"), ("_unknown", "_unknown"));
    }
}
