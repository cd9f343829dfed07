//! The __NAME__ skill: counts the words of a text. skill-sdk reads the request on stdin
//! and writes the frames on stdout; log to stderr (eprintln!), which the host keeps.

use serde::{Deserialize, Serialize};
use skill_sdk::{ActionError, Context, Skill};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountArgs {
    text: String,
}

#[derive(Serialize)]
struct CountOutput {
    words: usize,
}

fn count(args: CountArgs, ctx: &mut Context) -> Result<CountOutput, ActionError> {
    eprintln!("counting the words of {} bytes", args.text.len());
    ctx.progress("counting", Some(0.5));
    let words = args.text.split_whitespace().count();
    if words == 0 {
        return Err(ActionError::new("empty_text", "the text has no words"));
    }
    Ok(CountOutput { words })
}

fn skill() -> Skill {
    Skill::new().action("count", count)
}

fn main() {
    skill().run()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The last frame `skill` answers `args` with, as JSON.
    fn result_of(args: &str) -> serde_json::Value {
        let request = format!(r#"{{"protocol":"1.0","id":"t","action":"count","args":{args}}}"#);
        let answer = String::from_utf8(skill().answer(&request)).unwrap();
        serde_json::from_str(answer.lines().last().unwrap()).unwrap()
    }

    #[test]
    fn counts_the_words() {
        assert_eq!(result_of(r#"{"text":"two words"}"#)["output"]["words"], 2);
    }

    #[test]
    fn refuses_an_empty_text() {
        assert_eq!(result_of(r#"{"text":"  "}"#)["error"]["code"], "empty_text");
    }
}
