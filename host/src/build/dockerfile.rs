//! Which images a Dockerfile builds on. Their local IDs feed the content hash, so a
//! rebuilt base image gives every skill on it a new hash.

use std::collections::{BTreeMap, HashSet};

/// An image the Dockerfile reads from: a `FROM` or a `COPY --from` naming no stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseImage {
    /// As resolved for the engine: `name:tag`, `latest` when no tag or digest was given.
    pub reference: String,
    /// 1-based line of the instruction.
    pub line: usize,
}

/// Why a Dockerfile's base images cannot be told.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DockerfileError {
    /// A `FROM` with nothing after its flags.
    #[error("line {0}: FROM names no image")]
    NoImage(usize),
    /// A `FROM` whose image is empty once build args are substituted.
    #[error("line {0}: FROM names an empty image")]
    EmptyImage(usize),
    /// A `${...}` that does not close.
    #[error("line {line}: unterminated ${{ in {word:?}")]
    Unterminated {
        /// 1-based line of the instruction.
        line: usize,
        /// The word holding it.
        word: String,
    },
    /// No `FROM` at all.
    #[error("the Dockerfile has no FROM instruction")]
    NoFrom,
}

/// Every external image the Dockerfile uses, in order, without duplicates. `scratch` and
/// references to earlier stages are not images. `args` are the build args, which override
/// the defaults of `ARG` lines before the first `FROM`.
pub(crate) fn base_images(
    text: &str,
    args: &BTreeMap<String, String>,
) -> Result<Vec<BaseImage>, DockerfileError> {
    let mut globals: BTreeMap<String, String> = BTreeMap::new();
    let mut stages: HashSet<String> = HashSet::new();
    let mut stage_count = 0usize;
    let mut seen = HashSet::new();
    let mut bases = Vec::new();
    for (line, instruction) in instructions(text) {
        let mut words = instruction.split_whitespace();
        let keyword = words.next().unwrap_or_default().to_ascii_uppercase();
        let words: Vec<&str> = words.collect();
        let mut push = |image: String, bases: &mut Vec<BaseImage>| {
            let reference = normalize(&image);
            if seen.insert(reference.clone()) {
                bases.push(BaseImage { reference, line });
            }
        };
        match keyword.as_str() {
            "ARG" if stage_count == 0 => {
                for word in &words {
                    let (name, default) = word.split_once('=').unwrap_or((word, ""));
                    let value = args
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| unquote(default).to_string());
                    globals.insert(name.to_string(), value);
                }
            }
            "FROM" => {
                let mut rest = words.iter().skip_while(|w| w.starts_with("--"));
                let image = rest.next().ok_or(DockerfileError::NoImage(line))?;
                let image =
                    substitute(image, &globals).map_err(|word| DockerfileError::Unterminated {
                        line,
                        word: word.to_string(),
                    })?;
                if let (Some(as_kw), Some(name)) = (rest.next(), rest.next()) {
                    if as_kw.eq_ignore_ascii_case("as") {
                        stages.insert(name.to_ascii_lowercase());
                    }
                }
                stage_count += 1;
                if image.is_empty() {
                    return Err(DockerfileError::EmptyImage(line));
                }
                if image != "scratch" && !stages.contains(&image.to_ascii_lowercase()) {
                    push(image, &mut bases);
                }
            }
            "COPY" => {
                let from = words.iter().find_map(|w| w.strip_prefix("--from="));
                if let Some(from) = from {
                    let is_stage = stages.contains(&from.to_ascii_lowercase())
                        || from.parse::<usize>().is_ok_and(|i| i < stage_count);
                    if !is_stage {
                        push(from.to_string(), &mut bases);
                    }
                }
            }
            _ => {}
        }
    }
    if stage_count == 0 {
        return Err(DockerfileError::NoFrom);
    }
    Ok(bases)
}

/// Logical instructions with the line they start on: comments and blank lines dropped,
/// continuation lines joined, honouring an `# escape=` parser directive.
fn instructions(text: &str) -> Vec<(usize, String)> {
    let mut escape = '\\';
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    let mut directives_allowed = true;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if directives_allowed {
            if let Some(directive) = trimmed.strip_prefix('#') {
                if let Some((key, value)) = directive.split_once('=') {
                    if key.trim().eq_ignore_ascii_case("escape") {
                        escape = value.trim().chars().next().unwrap_or('\\');
                    }
                    continue;
                }
            }
            directives_allowed = false;
        }
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        let (start, mut text) = current.take().unwrap_or((i + 1, String::new()));
        match trimmed.strip_suffix(escape) {
            Some(body) => {
                text.push_str(body);
                text.push(' ');
                current = Some((start, text));
            }
            None => {
                text.push_str(trimmed);
                out.push((start, text));
            }
        }
    }
    if let Some(rest) = current {
        out.push(rest);
    }
    out
}

fn unquote(s: &str) -> &str {
    s.trim_matches(|c| c == '"' || c == '\'')
}

/// `$NAME`, `${NAME}`, `${NAME:-default}` and `${NAME:+alt}` from the global ARGs.
/// `word` with `$NAME`, `${NAME}` and `${NAME:-default}` replaced; `Err(word)` when a
/// `${` does not close.
fn substitute<'w>(word: &'w str, vars: &BTreeMap<String, String>) -> Result<String, &'w str> {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let expr: String = if chars.peek() == Some(&'{') {
            chars.next();
            let mut body = String::new();
            loop {
                match chars.next() {
                    Some('}') => break,
                    Some(c) => body.push(c),
                    None => return Err(word),
                }
            }
            body
        } else {
            let mut name = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_alphanumeric() || c == '_' {
                    name.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            name
        };
        let value = if let Some((name, default)) = expr.split_once(":-") {
            vars.get(name)
                .filter(|v| !v.is_empty())
                .cloned()
                .unwrap_or_else(|| default.to_string())
        } else if let Some((name, alt)) = expr.split_once(":+") {
            vars.get(name)
                .filter(|v| !v.is_empty())
                .map(|_| alt.to_string())
                .unwrap_or_default()
        } else {
            vars.get(&expr).cloned().unwrap_or_default()
        };
        out.push_str(&value);
    }
    Ok(out)
}

/// `debian` is `debian:latest` to the engine; a tag or digest stays as written.
fn normalize(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    if last.contains(':') || image.contains('@') {
        image.to_string()
    } else {
        format!("{image}:latest")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(text: &str, args: &[(&str, &str)]) -> Vec<String> {
        let args = args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        base_images(text, &args)
            .unwrap()
            .into_iter()
            .map(|b| b.reference)
            .collect()
    }

    #[test]
    fn scratch_is_no_image() {
        assert!(refs("FROM scratch\nCOPY x /x\n", &[]).is_empty());
    }

    #[test]
    fn multi_stage_references_are_not_images() {
        let text = "FROM skillhost/python AS build\nRUN make\nFROM build AS test\nFROM scratch\n\
                    COPY --from=build /a /a\nCOPY --from=0 /b /b\nCOPY --from=tools:1 /c /c\n";
        assert_eq!(refs(text, &[]), ["skillhost/python:latest", "tools:1"]);
    }

    #[test]
    fn args_flags_continuations_and_case() {
        let text = "# escape=`\nARG BASE=skillhost/debian\nARG TAG\nfrom --platform=linux/amd64 `\n  ${BASE}:${TAG:-v1} as one\n";
        assert_eq!(refs(text, &[]), ["skillhost/debian:v1"]);
        assert_eq!(
            refs(text, &[("BASE", "other"), ("TAG", "v2")]),
            ["other:v2"]
        );
    }

    #[test]
    fn registry_ports_and_digests_keep_their_tags() {
        assert_eq!(
            refs("FROM localhost:5000/img\n", &[]),
            ["localhost:5000/img:latest"]
        );
        assert_eq!(refs("FROM img@sha256:abc\n", &[]), ["img@sha256:abc"]);
        assert_eq!(refs("FROM a\nFROM a:latest\n", &[]), ["a:latest"]);
    }

    #[test]
    fn a_dockerfile_without_from_is_an_error() {
        assert_eq!(
            base_images("RUN true\n", &BTreeMap::new()),
            Err(DockerfileError::NoFrom)
        );
        assert_eq!(
            base_images("FROM\n", &BTreeMap::new())
                .unwrap_err()
                .to_string(),
            "line 1: FROM names no image"
        );
        assert_eq!(
            base_images("FROM ${X\n", &BTreeMap::new())
                .unwrap_err()
                .to_string(),
            "line 1: unterminated ${ in \"${X\""
        );
    }
}
