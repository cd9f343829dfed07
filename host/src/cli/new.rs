//! `skillhost new NAME --lang python|shell`: a complete skill directory from a template (a
//! manifest with an input and an output schema and examples, a Dockerfile, the source and
//! a `.dockerignore`), which builds and answers its examples unchanged.

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

pub(super) fn run(roots: &[PathBuf], cli: NewCli, format: Format) -> Result<i32, Error> {
    let files = render(cli.lang, &cli.name)?;
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
    match format {
        Format::Json => super::output::json(&serde_json::json!({
            "skill": cli.name, "dir": dir,
            "files": files.iter().map(|(f, _)| f).collect::<Vec<_>>(),
        })),
        Format::Human => {
            outln!("made {}", dir.display());
            for (file, _) in &files {
                outln!("  {file}");
            }
            let (action, args) = match cli.lang {
                Lang::Python => ("count", r#"{"text":"two words"}"#),
                Lang::Shell => ("hello", r#"{"name":"Ada"}"#),
            };
            outln!(
                "try it: skillhost --skills-dir {} invoke {} {action} --args '{args}'",
                parent.display(),
                cli.name
            );
            outln!("editor: `skillhost schema manifest > manifest.schema.json`, then `# yaml-language-server: $schema=manifest.schema.json` atop skill.yaml");
        }
    }
    Ok(exit_code::OK)
}

/// Write every file into a new `dir`; a failure removes what was made.
fn write_all(dir: &Path, files: &[(&str, String)]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let written = files
        .iter()
        .try_for_each(|(file, text)| std::fs::write(dir.join(file), text));
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
        for lang in [Lang::Python, Lang::Shell] {
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

    #[test]
    fn a_bad_name_is_refused_with_the_rule() {
        let error = render(Lang::Python, "My_Skill").unwrap_err().to_string();
        assert!(
            error.contains("\"My_Skill\" cannot be a skill's name"),
            "{error}"
        );
    }
}
