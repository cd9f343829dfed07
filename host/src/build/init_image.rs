//! skillhost's init (the `init` crate) inside the images skillhost builds: the binary the
//! build script compiled, how a skill's Dockerfile gains it, and the command a container
//! runs through it. Images without it (built by older versions, or elsewhere) run under
//! the engine's own init, and the host waits for the engine to report their exit.

use sha2::{Digest, Sha256};

use crate::engine::LocalImage;
use crate::lifecycle::labels;
use crate::vocab::INIT_PATH;

/// The static init binary, empty when the host was built for a non-Linux OS.
static BINARY: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/skillhost-init"));
/// Its sources: what the content hash covers, since compilers differ in the bytes they
/// make of them and an image built by one host must be found by another.
const SOURCES: [&str; 3] = [
    include_str!("../../../init/src/main.rs"),
    include_str!("../../../init/src/files.rs"),
    include_str!("../../../init/src/recycle.rs"),
];
/// Where the binary goes in the build context.
pub const CONTEXT_NAME: &str = ".skillhost-init";
/// The [`crate::lifecycle::labels::INIT`] value of the images this host builds: `2`, the
/// trailer format of `exit_trailer` with the recycling mode; `1` is that trailer alone.
pub const TRAILER_FORMAT: &str = "2";

pub fn binary() -> Option<&'static [u8]> {
    (!BINARY.is_empty()).then_some(BINARY)
}

pub fn source_digest() -> [u8; 32] {
    let mut digest = Sha256::new();
    for source in SOURCES {
        digest.update(source.len().to_le_bytes());
        digest.update(source.as_bytes());
    }
    digest.finalize().into()
}

/// The Dockerfile with the init copied into its last stage, as the last instruction so
/// nothing of the skill's own build can change or remove it.
pub fn dockerfile_with_init(dockerfile: &[u8]) -> Vec<u8> {
    let mut text = dockerfile.to_vec();
    if !text.ends_with(b"\n") {
        text.push(b'\n');
    }
    text.extend_from_slice(
        format!("# Added by skillhost: PID 1, which reports the skill's exit.\nCOPY {CONTEXT_NAME} {INIT_PATH}\n").as_bytes(),
    );
    text
}

/// The command a container of `image` runs under the init, when the image has an init
/// that writes the trailer this host reads.
pub fn init_command(image: &LocalImage) -> Option<Vec<String>> {
    matches!(init_format(image), Some("1" | "2")).then(|| command(&image.entrypoint, &image.cmd))
}

/// Whether the image's init can recycle its container (an image built before it could
/// runs each call in a container of its own).
pub fn recycles(image: &LocalImage) -> bool {
    init_format(image) == Some("2")
}

fn init_format(image: &LocalImage) -> Option<&str> {
    image.labels.get(labels::INIT).map(String::as_str)
}

/// The image's own command as the init's arguments. Docker runs `ENTRYPOINT` followed by
/// `CMD`; setting an entrypoint drops the image's `CMD`, so both become arguments.
fn command(entrypoint: &[String], cmd: &[String]) -> Vec<String> {
    entrypoint.iter().chain(cmd).cloned().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_is_copied_last_even_without_a_final_newline() {
        let text = dockerfile_with_init(b"FROM scratch\nCOPY skill /skill");
        let text = String::from_utf8(text).unwrap();
        assert!(text.starts_with("FROM scratch\nCOPY skill /skill\n#"));
        assert!(text.ends_with("COPY .skillhost-init /.skillhost-init\n"));
    }

    #[test]
    fn entrypoint_and_cmd_both_become_the_command() {
        let s = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            command(&s(&["/bin/sh", "-c"]), &s(&["exec skill"])),
            s(&["/bin/sh", "-c", "exec skill"])
        );
        assert_eq!(command(&[], &s(&["/skill"])), s(&["/skill"]));
    }

    #[test]
    fn a_linux_host_embeds_a_static_executable() {
        if cfg!(target_os = "linux") {
            let binary = binary().expect("built by build.rs");
            assert_eq!(&binary[..4], b"\x7fELF");
        }
    }
}
