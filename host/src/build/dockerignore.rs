//! `.dockerignore` with Docker's own semantics, ported from moby's patternmatcher: every
//! pattern is anchored at the context root, `**` spans directories, `!` re-includes,
//! the last matching pattern wins, and a pattern that matches a directory excludes
//! everything beneath it.

use regex::Regex;

/// A parsed `.dockerignore`.
#[derive(Debug, Default)]
pub struct DockerIgnore {
    patterns: Vec<Pattern>,
}

#[derive(Debug)]
struct Pattern {
    exclusion: bool,
    regex: Regex,
}

impl DockerIgnore {
    /// Parse the file's text. Errors name the offending line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut ignore = DockerIgnore::default();
        for (number, line) in text.trim_start_matches('\u{feff}').lines().enumerate() {
            if line.starts_with('#') {
                continue;
            }
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let (exclusion, rest) = match line.strip_prefix('!') {
                Some(rest) => (true, rest.trim()),
                None => (false, line),
            };
            if exclusion && rest.is_empty() {
                return Err(format!(
                    "line {}: illegal exclusion pattern \"!\"",
                    number + 1
                ));
            }
            ignore
                .push(exclusion, rest)
                .map_err(|e| format!("line {}: {e}", number + 1))?;
        }
        Ok(ignore)
    }

    /// Add a pattern after those parsed, as the Docker CLI does for the Dockerfile.
    pub fn push(&mut self, exclusion: bool, pattern: &str) -> Result<(), String> {
        let mut cleaned = clean(pattern);
        if cleaned.len() > 1 && cleaned.starts_with('/') {
            cleaned.remove(0);
        }
        let regex =
            Regex::new(&to_regex(&cleaned)).map_err(|e| format!("bad pattern {pattern:?}: {e}"))?;
        self.patterns.push(Pattern { exclusion, regex });
        Ok(())
    }

    /// Whether any `!` pattern exists, in which case excluded directories must still be
    /// searched for re-included files.
    pub fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (relative, `/`-separated) is left out of the context.
    pub fn is_excluded(&self, path: &str) -> bool {
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for pattern in &self.patterns {
            // An exclusion only matters once something matched, an inclusion only before.
            if pattern.exclusion != matched {
                continue;
            }
            let hit = pattern.regex.is_match(path)
                || (1..=parents.len()).any(|n| pattern.regex.is_match(&parents[..n].join("/")));
            if hit {
                matched = !pattern.exclusion;
            }
        }
        matched
    }
}

/// Go's `filepath.Clean` for `/`-separated paths.
fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn to_regex(pattern: &str) -> String {
    let mut out = String::from("^");
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                if chars.peek() == Some(&'/') {
                    chars.next();
                }
                if chars.peek().is_none() {
                    out.push_str(".*");
                } else {
                    out.push_str("(.*/)?");
                }
            }
            '*' => out.push_str("[^/]*"),
            '?' => out.push_str("[^/]"),
            '\\' => match chars.next() {
                Some(next) => out.push_str(&regex::escape(&next.to_string())),
                None => out.push_str("\\\\"),
            },
            '[' | ']' => out.push(c),
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' | '^' => {
                // `^` right after `[` negates a class, as in Go; elsewhere it is literal.
                if c == '^' && out.ends_with('[') {
                    out.push('^');
                } else {
                    out.push('\\');
                    out.push(c);
                }
            }
            other => out.push(other),
        }
    }
    out.push('$');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignore(text: &str) -> DockerIgnore {
        DockerIgnore::parse(text).unwrap()
    }

    #[test]
    fn patterns_are_anchored_at_the_root() {
        let i = ignore("foo\n/bar/baz\n*.log\n");
        assert!(i.is_excluded("foo"));
        assert!(
            i.is_excluded("foo/inner.txt"),
            "a matched directory excludes its contents"
        );
        assert!(
            !i.is_excluded("sub/foo"),
            "unlike gitignore, foo does not match at depth"
        );
        assert!(i.is_excluded("bar/baz"));
        assert!(i.is_excluded("a.log"));
        assert!(!i.is_excluded("dir/a.log"), "* does not cross /");
    }

    #[test]
    fn double_star_spans_directories() {
        let i = ignore("**/*.tmp\nbuild/**\n");
        assert!(i.is_excluded("a.tmp"));
        assert!(i.is_excluded("x/y/z.tmp"));
        assert!(i.is_excluded("build/out/bin"));
        assert!(!i.is_excluded("src/main.rs"));
    }

    #[test]
    fn exceptions_and_last_match_wins() {
        let i = ignore("*.md\n!README.md\nREADME*\n");
        assert!(i.is_excluded("NOTES.md"));
        assert!(
            i.is_excluded("README.md"),
            "the later README* wins over the exception"
        );
        let i = ignore("docs\n!docs/keep.txt\n");
        assert!(i.is_excluded("docs/other.txt"));
        assert!(!i.is_excluded("docs/keep.txt"));
        assert!(i.has_exceptions());
    }

    #[test]
    fn comments_blank_lines_and_cleaning() {
        let i = ignore("# comment\n\n  ./a/../b/  \n!\tc\n");
        assert!(i.is_excluded("b"));
        assert!(!i.is_excluded("# comment"));
        assert!(DockerIgnore::parse("!\n").unwrap_err().contains("line 1"));
    }

    #[test]
    fn character_classes_and_escapes() {
        let i = ignore("file[0-9].txt\nlit\\*\nq?.c\n[^a]x\n");
        assert!(i.is_excluded("file3.txt"));
        assert!(!i.is_excluded("filex.txt"));
        assert!(i.is_excluded("lit*"));
        assert!(!i.is_excluded("litx"));
        assert!(i.is_excluded("q1.c"));
        assert!(i.is_excluded("bx") && !i.is_excluded("ax"));
    }

    #[test]
    fn go_clean() {
        assert_eq!(clean("a//b/./c/.."), "a/b");
        assert_eq!(clean("/../x"), "/x");
        assert_eq!(clean("../x"), "../x");
        assert_eq!(clean(""), ".");
    }
}
