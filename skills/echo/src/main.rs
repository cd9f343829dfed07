//! The bundled echo skill: action `say` returns the text it was given.

use serde::{Deserialize, Serialize};
use skill_sdk::{ActionError, Context, Skill};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SayArgs {
    text: String,
}

#[derive(Serialize)]
struct SayOutput {
    text: String,
}

fn say(args: SayArgs, _ctx: &mut Context) -> Result<SayOutput, ActionError> {
    Ok(SayOutput { text: args.text })
}

fn main() {
    Skill::new().action("say", say).run()
}
