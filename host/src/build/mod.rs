//! Images by content hash. A skill directory becomes a deterministic tar (`context`,
//! honouring `.dockerignore`), its Dockerfile names the base images whose IDs complete the
//! hash (`dockerfile`, `content_hash`), and the [`ImageBuilder`] reuses the
//! `skill-<name>:<hash>` image or builds exactly the tar that was hashed, with skillhost's
//! init added (`init_image`). The base images skills start `FROM` are built the same way
//! from `images/` ([`build_base_images`]).

pub(crate) mod base_images;
pub(crate) mod builder;
pub(crate) mod content_hash;
pub(crate) mod context;
pub(crate) mod dockerfile;
pub(crate) mod dockerignore;
pub(crate) mod init_image;

pub use base_images::{
    build_all as build_base_images, discover as discover_base_images, BaseImage, BaseImageError,
    Debootstrap, ImageManifest,
};
pub use builder::{
    plan, BuildError, BuildReport, CacheOutcome, ImageBuilder, ImageTarget, Observer, Plan,
};
pub use content_hash::{ContentHash, HashError};
pub use context::ContextError;
pub use dockerfile::DockerfileError;
