//! The words every layer speaks, and nothing else: how a call is refused ([`Refusal`]),
//! how its progress is reported ([`ProgressCallback`]), and the well-known names of
//! what skillhost puts into images and runs beside skills. A leaf: it imports no module
//! of this crate, so the layers below `invoke` use these without importing upward (the
//! layer order is in docs/architecture.md, and `layering`'s test keeps it).

mod refusal;

use std::sync::Arc;

use skill_sdk::Progress;

pub use refusal::Refusal;

/// Receives progress frames while an action runs.
pub type ProgressCallback = Arc<dyn Fn(&Progress) + Send + Sync>;

/// Where skillhost's init sits in every skill image it builds.
pub const INIT_PATH: &str = "/.skillhost-init";

/// The egress proxy's image, built from `images/egress-proxy` by `skillhost images build`.
pub(crate) const PROXY_IMAGE: &str = "skillhost/egress-proxy:latest";
