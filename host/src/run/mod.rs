//! One container, from its configuration to what was observed of it: the hardened
//! configuration ([`container_spec`] with [`seccomp_profile`]), the run itself
//! ([`container`]) as the user the manifest names, resolved in the image ([`run_as`]),
//! strict decoding of stdout ([`frame_reader`]) and the init's report of how the skill
//! ended ([`exit_trailer`]).

pub(crate) mod container;
pub(crate) mod container_spec;
pub(crate) mod exit_trailer;
pub(crate) mod frame_reader;
pub(crate) mod run_as;
pub(crate) mod seccomp_profile;
