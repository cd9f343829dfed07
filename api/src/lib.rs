//! The caller-facing contract of skillhost, with no engine in it: what an invocation
//! returns ([`InvocationResult`], [`Status`], [`InvocationPath`], [`Stats`]), every error
//! code the host itself can put in a result ([`codes`]), the CLI's exit codes
//! ([`exit_code`]), its typed reports ([`ListReport`], [`TestReport`], [`ErrorReport`]), and the bodies of
//! the HTTP service's API ([`InvokeRequest`], [`SkillList`], [`Invocation`], ...).
//!
//! The engine crate `skillhost`, its HTTP service and the clients all use these types, so
//! a result means the same thing wherever it is read. Types that will grow are
//! `#[non_exhaustive]`: match them with a wildcard arm and build them with their
//! constructors.

pub mod codes;
pub mod exit_code;
mod report;
mod result;
mod service;
mod session;
mod test_report;
pub mod tools;

pub use report::{BrokenSkill, ErrorDetail, ErrorReport, ListReport, ListedSkill, ProblemReport};
pub use result::{
    Denial, Egress, InvocationError, InvocationPath, InvocationResult, SessionCall, Stats, Status,
};
pub use service::{
    ActionInfo, Invocation, InvocationState, InvokeRequest, Readiness, ServiceError,
    ServiceErrorDetail, SkillInfo, SkillList,
};
pub use session::{
    FileEntry, FileKind, FileList, SessionInfo, SessionKind, SessionList, SessionRequest,
};
pub use test_report::{ExampleFailure, ExampleReport, FailureKind, TestReport};
pub use tools::{ToolAnnotations, ToolFormat, ToolList};
