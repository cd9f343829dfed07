//! A call that ends before, or instead of, a skill's answer: refused at admission, or
//! failed while its image or its container was being made ready.

use skillhost_api::{codes, InvocationError, InvocationResult, Status};

/// Why an invocation ended without running the skill to its answer. Its code is one of
/// [`skillhost_api::codes`], and it always comes with the status that code has there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message} ({code})")]
pub struct Refusal {
    /// The result's status: `rejected` for a call refused before anything ran,
    /// `infrastructure_error`, `timeout` or `skill_error` for failures on the way.
    pub status: Status,
    /// One of [`skillhost_api::codes`].
    pub code: &'static str,
    /// What was wrong, naming it.
    pub message: String,
}

impl Refusal {
    /// A refusal with `code`, whose status is the one [`codes::ALL`] gives it.
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        let status = codes::status_of(code).unwrap_or(Status::InfrastructureError);
        debug_assert!(
            codes::status_of(code).is_some(),
            "{code} is not in codes::ALL"
        );
        Refusal {
            status,
            code,
            message: message.into(),
        }
    }

    /// Record this refusal as the outcome of `result`.
    pub(crate) fn apply_to(self, result: &mut InvocationResult) {
        result.status = self.status;
        result.error = Some(InvocationError::new(self.code, self.message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_takes_its_codes_status() {
        let refusal = Refusal::new(codes::UNKNOWN_SKILL, "no skill named \"x\"");
        assert_eq!(refusal.status, Status::Rejected);
        let refusal = Refusal::new(codes::BUILD_FAILED, "step 2 failed");
        assert_eq!(refusal.status, Status::SkillError);
        let mut result = InvocationResult::new("i", "s", "a");
        Refusal::new(codes::ENGINE_ERROR, "gone").apply_to(&mut result);
        assert_eq!(result.status, Status::InfrastructureError);
        assert_eq!(result.error.unwrap().code, "engine_error");
    }
}
