//! `skillhost completions SHELL`: scripts generated from the parser, which the shells
//! accept and which know every subcommand. No engine needed.

use crate::common;

use common::skillhost;

#[test]
fn the_bash_script_parses_and_completes_every_subcommand() {
    let out = skillhost().args(["completions", "bash"]).output().unwrap();
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    for subcommand in [
        "invoke",
        "serve",
        "lock",
        "push",
        "pull",
        "export",
        "import",
        "completions",
    ] {
        assert!(script.contains(subcommand), "{subcommand} is not completed");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skillhost.bash");
    std::fs::write(&path, &script).unwrap();
    let checked = std::process::Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );
}

#[test]
fn every_offered_shell_gets_a_script_and_others_are_named() {
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let out = skillhost().args(["completions", shell]).output().unwrap();
        assert!(out.status.success() && !out.stdout.is_empty(), "{shell}");
    }
    let out = skillhost().args(["completions", "tcsh"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("possible values: bash"));
}
