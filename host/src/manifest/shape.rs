//! Refusing pathological YAML before it is parsed in earnest.
//!
//! The deserializer and the position index take time that grows faster than the text
//! with nesting: a 1 MiB manifest of half a million nested `[` took minutes. One pass of
//! a streaming parser, stopped at the first event past a limit, costs microseconds, so a
//! hostile manifest is refused before it can hold up anything else.

use yaml_rust2::parser::{Event, Parser};

use super::Problem;

/// Deeper nesting than this is refused. The manifest itself uses four levels; the rest
/// is room for the actions' JSON Schemas.
pub(crate) const MAX_DEPTH: usize = 64;
/// Aliases (`*name`) beyond this are refused: each may stand for a whole subtree, and
/// expanding many of them is how a small document becomes a huge one.
pub(crate) const MAX_ALIASES: usize = 64;

/// The first thing about `text`'s shape that is over a limit, at its position.
pub(crate) fn check(text: &str) -> Result<(), Problem> {
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    let mut aliases = 0usize;
    loop {
        let (event, marker) = match parser.next_token() {
            Ok(next) => next,
            // The scanner looks ahead past nested openings, and has a limit of its own.
            Err(e) if e.info().contains("recursion limit") => {
                return Err(Problem {
                    field: String::new(),
                    position: Some((e.marker().line(), e.marker().col() + 1)),
                    message: too_deep(),
                });
            }
            // Other syntax errors are the deserializer's to report, with its context;
            // up to here the text was shallow, so it will be quick about it.
            Err(_) => return Ok(()),
        };
        let at = || Some((marker.line(), marker.col() + 1));
        match event {
            Event::StreamEnd => return Ok(()),
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Problem {
                        field: String::new(),
                        position: at(),
                        message: too_deep(),
                    });
                }
            }
            Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
            Event::Alias(_) => {
                aliases += 1;
                if aliases > MAX_ALIASES {
                    return Err(Problem {
                        field: String::new(),
                        position: at(),
                        message: format!("more than {MAX_ALIASES} aliases (*name)"),
                    });
                }
            }
            _ => {}
        }
    }
}

fn too_deep() -> String {
    format!("nested deeper than {MAX_DEPTH} levels: no manifest needs that many")
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[test]
    fn deep_flow_and_block_nesting_is_refused_where_it_passes_the_limit() {
        let flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let mappings = format!("{}1{}", "{a: ".repeat(100_000), "}".repeat(100_000));
        let block: String = (0..200)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let dashes = format!("{}x\n", "- ".repeat(100_000));
        for text in [&flow, &mappings, &block, &dashes] {
            let started = Instant::now();
            let problem = check(text).unwrap_err();
            assert!(problem.message.contains("deeper than 64"), "{problem:?}");
            assert!(problem.position.is_some());
            // Not a timed assertion of speed: a guard against the quadratic parse this
            // replaced, which took tens of seconds here.
            assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
        }
        assert_eq!(check(&block).unwrap_err().position.map(|p| p.0), Some(65));
    }

    #[test]
    fn ordinary_manifests_and_a_few_aliases_pass() {
        let text = "name: x\nrun: &run {limits: {memory: 1m}}\nother: *run\nactions: {a: {input: {type: object, properties: {p: {type: array, items: {type: string}}}}}}\n";
        assert_eq!(check(text), Ok(()));
        let nested_64 = format!("{}{}", "[".repeat(64), "]".repeat(64));
        assert_eq!(check(&nested_64), Ok(()));
    }

    #[test]
    fn many_aliases_are_refused() {
        let text = format!("a: &a [1]\nb: [{}]\n", vec!["*a"; 100].join(", "));
        let problem = check(&text).unwrap_err();
        assert!(problem.message.contains("aliases"), "{problem:?}");
    }

    #[test]
    fn syntax_errors_are_left_to_the_deserializer() {
        assert_eq!(check("a: [1, 2\n"), Ok(()));
    }
}
