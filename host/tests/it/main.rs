//! skillhost's integration tests, one module per concern, in one test binary (one link
//! instead of nineteen). Every test but `properties` and `completions` uses the real
//! Docker Engine, and the ones that need them start real servers (a registry, proxies,
//! a second engine in Swarm mode) by PID; each removes every container, network and tag
//! it made, even when it fails. `cargo test --test it MODULE::` runs one module.

mod common;

mod base_images;
mod build;
mod completions;
mod docs_examples;
mod egress;
mod exit_trailer;
mod faults;
mod hostile;
mod invoke;
mod lock;
mod new;
mod paths;
mod properties;
mod recycle;
mod runners;
mod serve;
mod sessions;
mod ship;
mod test_command;
