//! The layer order of `host/src`, kept by a test: a module may import from its own layer
//! and the layers below it, never from one above. docs/architecture.md states the same
//! order, and the test checks that too.

/// The layers, lowest first; each a top-level module (a folder or a file) of `host/src`.
/// The CLI (`cli/`, the binary's own crate) and `testing.rs` sit above all of them.
pub(crate) const LAYERS: &[&[&str]] = &[
    &["sync", "vocab"],
    &["manifest", "engine"],
    &["lifecycle"],
    &["catalog", "tools"],
    &["build"],
    &["egress"],
    &["run"],
    &["paths"],
    &["lock", "cluster"],
    &["ship"],
    &["invoke"],
    &["session"],
    &["error"],
    &["host"],
    &["examples"],
    &["mcp"],
    &["service"],
    &["testing"],
];

/// What the crate root re-exports, by the module that defines it.
const ROOT_NAMES: &[(&str, &str)] = &[
    ("Error", "error"),
    ("Host", "host"),
    ("HostConfig", "host"),
    ("Session", "host"),
    ("InvokeOptions", "invoke"),
    ("ImageState", "invoke"),
    ("Refusal", "vocab"),
    ("ProgressCallback", "vocab"),
];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use super::*;

    fn layer_of(module: &str) -> Option<usize> {
        LAYERS.iter().position(|layer| layer.contains(&module))
    }

    /// The library source of a file, without its unit tests (which may reach anywhere).
    fn library_part(text: &str) -> &str {
        let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
        &text[..end]
    }

    /// Every module of this crate `text` names through `crate::` outside comments, with
    /// each item of a `crate::{...}` group read as its own.
    fn imports(text: &str) -> BTreeSet<String> {
        let code: String = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut found = BTreeSet::new();
        for (at, _) in code.match_indices("crate::") {
            // `skillhost_api::...` and the like are other crates.
            let before = code[..at].chars().last();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &code[at + "crate::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group[..group.find('}').unwrap_or(group.len())]
                    .split(',')
                    .map(str::trim)
                    .collect(),
                None => vec![rest],
            };
            for name in names {
                let name: String = name
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                let module = ROOT_NAMES
                    .iter()
                    .find(|(item, _)| *item == name)
                    .map_or(name.as_str(), |(_, module)| module);
                if name != "api" && !name.is_empty() {
                    found.insert(module.to_string());
                }
            }
        }
        found
    }

    fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    #[test]
    fn every_import_goes_to_the_same_layer_or_below() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut upward = Vec::new();
        for file in files {
            let relative = file.strip_prefix(&src).unwrap();
            let top = relative
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if ["cli", "main", "lib", "layering"].contains(&top.as_str()) {
                continue;
            }
            let Some(own) = layer_of(&top) else {
                panic!("{top} is in no layer: add it to LAYERS and docs/architecture.md");
            };
            let text = std::fs::read_to_string(&file).unwrap();
            for module in imports(library_part(&text)) {
                match layer_of(&module) {
                    Some(layer) if layer <= own => {}
                    Some(_) => upward.push(format!("{} imports {module}", relative.display())),
                    None => panic!(
                        "{} imports {module}, which is in no layer",
                        relative.display()
                    ),
                }
            }
        }
        assert!(
            upward.is_empty(),
            "imports from a higher layer:\n{}",
            upward.join("\n")
        );
    }

    #[test]
    fn the_architecture_document_states_the_same_order() {
        let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/architecture.md");
        let doc = std::fs::read_to_string(doc).unwrap();
        let stated: Vec<String> = LAYERS
            .iter()
            .map(|layer| {
                layer
                    .iter()
                    .map(|m| format!("`{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .collect();
        let line = stated.join(" < ");
        assert!(
            doc.contains(&line),
            "docs/architecture.md should state: {line}"
        );
    }

    #[test]
    fn imports_are_read_through_root_re_exports_and_not_from_other_crates() {
        let text = "use crate::engine::Engine;\nuse crate::{Host, Refusal};\n/// [`crate::lock`]\nuse skillhost_api::codes;\nfn f() -> crate::Error {}";
        let found: Vec<String> = imports(text).into_iter().collect();
        assert_eq!(found, ["engine", "error", "host", "vocab"]);
    }
}
