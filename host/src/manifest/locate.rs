//! Finding the source position of a field path, for errors found after deserialization.

use marked_yaml::Node;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
}

pub type FieldPath = Vec<Segment>;

/// `run.limits.memory`, `examples[0].action`.
pub fn render(path: &[Segment]) -> String {
    let mut out = String::new();
    for segment in path {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// A position index over the manifest's source.
pub struct Locator {
    root: Option<Node>,
}

impl Locator {
    pub fn new(text: &str) -> Self {
        // A document serde accepted but this parser does not simply has no positions.
        Locator {
            root: marked_yaml::parse_yaml(0, text).ok(),
        }
    }

    /// The 1-based line and column of the deepest node of `path` that exists.
    pub fn position(&self, path: &[Segment]) -> Option<(usize, usize)> {
        let mut node = self.root.as_ref()?;
        let mut best = node.span().start();
        for segment in path {
            let next = match (segment, node) {
                (Segment::Key(key), Node::Mapping(map)) => map.get_node(key),
                (Segment::Index(i), Node::Sequence(seq)) => seq.get_node(*i),
                _ => None,
            };
            let Some(next) = next else { break };
            node = next;
            best = node.span().start().or(best);
        }
        best.map(|m| (m.line(), m.column()))
    }
}

/// Where the second of two equal keys in one mapping stands: serde only notices a
/// duplicate when the whole mapping has been read, so its own position is the mapping's.
pub fn duplicate_key(text: &str) -> Option<(usize, usize)> {
    let options = marked_yaml::LoaderOptions::default().error_on_duplicate_keys(true);
    match marked_yaml::parse_yaml_with_options(0, text, options) {
        Err(marked_yaml::LoadError::DuplicateKey(dup)) => {
            dup.key.span().start().map(|m| (m.line(), m.column()))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_fields_and_falls_back_to_the_parent() {
        let text =
            "name: x\nrun:\n  limits:\n    memory: 1m\nexamples:\n  - action: a\n  - action: b\n";
        let loc = Locator::new(text);
        let key = |k: &str| Segment::Key(k.into());
        assert_eq!(
            loc.position(&[key("run"), key("limits"), key("memory")]),
            Some((4, 13))
        );
        assert_eq!(
            loc.position(&[key("examples"), Segment::Index(1), key("action")]),
            Some((7, 13))
        );
        assert_eq!(
            loc.position(&[key("run"), key("limits"), key("pids")])
                .map(|p| p.0),
            Some(4)
        );
        assert_eq!(
            render(&[key("examples"), Segment::Index(1), key("action")]),
            "examples[1].action"
        );
    }
}
