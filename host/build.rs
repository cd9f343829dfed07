//! Compile `init/src/main.rs` into a static binary the host embeds and adds to every skill
//! image it builds. rustc is called directly: the init has no dependencies, and a nested
//! cargo would fight the outer one for the target directory's lock.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let source = manifest_dir.join("../init/src/main.rs");
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("skillhost-init");
    // The whole directory: a module added to the init rebuilds it too.
    println!(
        "cargo:rerun-if-changed={}",
        manifest_dir.join("../init/src").display()
    );
    // Containers run Linux; on another host OS the init is left out and skill containers
    // use the engine's init instead.
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        std::fs::write(&out, b"").unwrap();
        return;
    }
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let target = std::env::var("TARGET").unwrap();
    let output = Command::new(rustc)
        .args(["--edition", "2021", "--crate-name", "skillhost_init"])
        .args(["--crate-type", "bin", "--target", &target])
        .args([
            "-C",
            "opt-level=s",
            "-C",
            "panic=abort",
            "-C",
            "strip=symbols",
        ])
        .args(["-C", "target-feature=+crt-static", "-o"])
        .arg(&out)
        .arg(&source)
        .output()
        .expect("running rustc for the skillhost init");
    if !output.status.success() {
        panic!(
            "compiling the skillhost init ({}) as a static binary failed; a static C library \
             (libc6-dev) is needed:\n{}",
            source.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
