//! `skillhost new NAME --lang python|rust|shell`: a complete skill directory from a
//! template (a manifest with an input and an output schema and examples, a Dockerfile, the
//! source and a `.dockerignore`), which builds and passes `skillhost test` unchanged.

use std::path::{Path, PathBuf};

use skillhost::api::exit_code;
use skillhost::manifest::Manifest;
use skillhost::Error;

use super::{usage, Format};

/// The languages a skill can be started in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Lang {
    /// Python 3 on skillhost/python, speaking the protocol with the standard library.
    Python,
    /// Rust with skill-sdk (from crates.io, or --sdk-path), a static binary on scratch.
    Rust,
    /// POSIX shell on skillhost/debian: the template for any other language.
    Shell,
}

#[derive(Debug, clap::Args)]
pub(crate) struct NewCli {
    /// The skill's name: lowercase letters, digits and dashes, starting with a letter.
    name: String,
    /// The language of the skill.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The directory the skill's directory is made in [default: the first --skills-dir,
    /// else ./skills].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rust only: build against this skill-sdk checkout instead of crates.io' (writes
    /// `.cargo/config.toml` with a `[patch.crates-io]` entry; Cargo.toml keeps the
    /// version, so deleting that file is all it takes to use the published crate).
    #[arg(long, value_name = "DIR")]
    sdk_path: Option<PathBuf>,
}

/// The template's files: name in the skill directory, text with `__NAME__` for the name.
fn template(lang: Lang) -> &'static [(&'static str, &'static str)] {
    match lang {
        Lang::Python => &[
            (
                "skill.yaml",
                include_str!("../../templates/python/skill.yaml"),
            ),
            ("skill.py", include_str!("../../templates/python/skill.py")),
            (
                "Dockerfile",
                include_str!("../../templates/python/Dockerfile"),
            ),
            (
                ".dockerignore",
                include_str!("../../templates/python/.dockerignore"),
            ),
        ],
        Lang::Rust => &[
            (
                "skill.yaml",
                include_str!("../../templates/rust/skill.yaml"),
            ),
            (
                "Cargo.toml",
                include_str!("../../templates/rust/Cargo.toml"),
            ),
            (
                "src/main.rs",
                include_str!("../../templates/rust/src/main.rs"),
            ),
            (
                "Dockerfile",
                include_str!("../../templates/rust/Dockerfile"),
            ),
            (
                ".dockerignore",
                include_str!("../../templates/rust/.dockerignore"),
            ),
        ],
        Lang::Shell => &[
            (
                "skill.yaml",
                include_str!("../../templates/shell/skill.yaml"),
            ),
            ("skill.sh", include_str!("../../templates/shell/skill.sh")),
            (
                "Dockerfile",
                include_str!("../../templates/shell/Dockerfile"),
            ),
            (
                ".dockerignore",
                include_str!("../../templates/shell/.dockerignore"),
            ),
        ],
    }
}

/// The template's files for `name`, its manifest checked as skillhost will load it.
fn render(lang: Lang, name: &str) -> Result<Vec<(&'static str, String)>, Error> {
    let files: Vec<(&'static str, String)> = template(lang)
        .iter()
        .map(|(file, text)| (*file, text.replace("__NAME__", name)))
        .collect();
    let manifest = files
        .iter()
        .find(|(file, _)| *file == "skill.yaml")
        .map(|(_, text)| text.as_str())
        .unwrap_or_default();
    if let Err(problems) = Manifest::parse(manifest) {
        let reasons: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(usage(format!(
            "{name:?} cannot be a skill's name: {}",
            reasons.join("; ")
        )));
    }
    Ok(files)
}

/// The `.cargo/config.toml` that builds a Rust skill against the skill-sdk in `sdk`.
fn sdk_patch(sdk: &Path) -> Result<String, Error> {
    let manifest = sdk.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).map_err(|e| {
        usage(format!(
            "--sdk-path {}: cannot read {}: {e}; give the directory of skill-sdk's Cargo.toml",
            sdk.display(),
            manifest.display()
        ))
    })?;
    if !text.lines().any(|l| l.trim() == r#"name = "skill-sdk""#) {
        return Err(usage(format!(
            "--sdk-path {}: {} is not skill-sdk's",
            sdk.display(),
            manifest.display()
        )));
    }
    let absolute = sdk
        .canonicalize()
        .map_err(|e| usage(format!("--sdk-path {}: {e}", sdk.display())))?;
    // TOML basic strings take a path as JSON does.
    let path = serde_json::to_string(&absolute.to_string_lossy())
        .map_err(|e| usage(format!("--sdk-path {}: {e}", sdk.display())))?;
    Ok(format!(
        "# skill-sdk from a local checkout instead of crates.io (skillhost new --sdk-path).\n\
         # Delete this file to build with the version Cargo.toml names.\n\
         [patch.crates-io]\n\
         skill-sdk = {{ path = {path} }}\n"
    ))
}

pub(super) fn run(roots: &[PathBuf], cli: NewCli, format: Format) -> Result<i32, Error> {
    let mut files = render(cli.lang, &cli.name)?;
    match (&cli.sdk_path, cli.lang) {
        (Some(sdk), Lang::Rust) => files.push((".cargo/config.toml", sdk_patch(sdk)?)),
        (Some(_), _) => return Err(usage("--sdk-path is for --lang rust only")),
        (None, _) => {}
    }
    let parent = cli
        .dir
        .or_else(|| roots.first().cloned())
        .unwrap_or_else(|| PathBuf::from("skills"));
    let dir = parent.join(&cli.name);
    if dir.exists() {
        return Err(usage(format!(
            "{} already exists; choose another name or --dir",
            dir.display()
        )));
    }
    write_all(&dir, &files).map_err(|e| {
        usage(format!(
            "cannot write the skill into {}: {e}",
            dir.display()
        ))
    })?;
    let mut made: Vec<&str> = files.iter().map(|(file, _)| *file).collect();
    if cli.lang == Lang::Rust {
        match lock_crates(&dir) {
            Ok(()) => made.push("Cargo.lock"),
            Err(why) => errln!(
                "warning: {why}; run `cargo generate-lockfile` in {} before building: the \
                 manifest's build command is --locked",
                dir.display()
            ),
        }
    }
    match format {
        Format::Json => super::output::json(&serde_json::json!({
            "skill": cli.name, "dir": dir, "files": made,
        })),
        Format::Human => {
            outln!("made {}", dir.display());
            for file in &made {
                outln!("  {file}");
            }
            let (action, args) = match cli.lang {
                Lang::Python | Lang::Rust => ("count", r#"{"text":"two words"}"#),
                Lang::Shell => ("hello", r#"{"name":"Ada"}"#),
            };
            outln!(
                "test it: skillhost --skills-dir {} test {}",
                parent.display(),
                cli.name
            );
            outln!(
                "try it:  skillhost --skills-dir {} invoke {} {action} --args '{args}'",
                parent.display(),
                cli.name
            );
            outln!("editor: `skillhost schema manifest > manifest.schema.json`, then `# yaml-language-server: $schema=manifest.schema.json` atop skill.yaml");
        }
    }
    Ok(exit_code::OK)
}

/// Write the Rust skill's `Cargo.lock` now, so its first build is already reproducible
/// (`cargo build --locked`) and the content hash does not move when a build would write
/// the lock.
fn lock_crates(dir: &Path) -> Result<(), String> {
    let output = std::process::Command::new("cargo")
        .arg("generate-lockfile")
        .current_dir(dir)
        .output()
        .map_err(|e| format!("cannot run cargo to write Cargo.lock: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(format!(
        "`cargo generate-lockfile` failed ({}): {}",
        output.status,
        stderr.trim()
    ))
}

/// Write every file into a new `dir`; a failure removes what was made.
fn write_all(dir: &Path, files: &[(&str, String)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let written = files.iter().try_for_each(|(file, text)| {
        let path = dir.join(file);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)
    });
    if written.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_gives_a_valid_manifest_with_schemas_and_examples() {
        for lang in [Lang::Python, Lang::Rust, Lang::Shell] {
            let files = render(lang, "my-skill").unwrap();
            let text = &files.iter().find(|(f, _)| *f == "skill.yaml").unwrap().1;
            let manifest = Manifest::parse(text).unwrap();
            assert_eq!(manifest.name, "my-skill");
            assert!(!manifest.examples.is_empty(), "{lang:?}");
            assert!(
                manifest.actions.values().all(|a| a.output.is_some()),
                "{lang:?}: every action declares its output"
            );
            assert!(files.iter().all(|(_, t)| !t.contains("__NAME__")));
        }
    }

    /// The template must name a skill-sdk this repository's is: a scaffold copied out
    /// builds against the published one of the same version.
    #[test]
    fn the_rust_template_requires_this_skill_sdk_version() {
        let template: toml::Value =
            toml::from_str(include_str!("../../templates/rust/Cargo.toml")).unwrap();
        let required = template["dependencies"]["skill-sdk"].as_str().unwrap();
        let sdk: toml::Value =
            toml::from_str(include_str!("../../../skill-sdk/Cargo.toml")).unwrap();
        let version = sdk["package"]["version"].as_str().unwrap();
        let required = semver::VersionReq::parse(required).unwrap();
        assert!(
            required.matches(&semver::Version::parse(version).unwrap()),
            "the template requires skill-sdk {required}, this one is {version}"
        );
    }

    #[test]
    fn a_bad_name_is_refused_with_the_rule() {
        let error = render(Lang::Python, "My_Skill").unwrap_err().to_string();
        assert!(
            error.contains("\"My_Skill\" cannot be a skill's name"),
            "{error}"
        );
    }
}
