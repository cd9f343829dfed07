//! The bundled echo skill: action `say` returns the text it was given.
//!
//! Built as a static binary for its container, and as a `cdylib` exporting the native
//! C ABI so a trusting host can run it in process.

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

/// The skill with its actions.
pub fn skill() -> Skill {
    Skill::new().action("say", say)
}

skill_sdk::export_native!(skill);
