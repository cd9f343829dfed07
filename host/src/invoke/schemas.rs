//! Each action's JSON Schemas, compiled once per host: the input schema that admission
//! checks arguments against, and the output schema (where one is declared) that a skill's
//! output must match, the action's output contract.

use std::collections::HashMap;

use serde_json::{json, Value};
use skillhost_api::{codes, InvocationError};

use crate::catalog::Catalog;

/// How many schema violations a message lists; the rest are left out.
pub(crate) const MAX_LISTED_PROBLEMS: usize = 10;

type Key = (String, String);

/// (skill, action) to compiled validators.
#[derive(Default)]
pub(crate) struct Schemas {
    inputs: HashMap<Key, jsonschema::Validator>,
    outputs: HashMap<Key, jsonschema::Validator>,
}

impl Schemas {
    /// Compile every action's schemas in `catalog`. Manifest validation compiled each one
    /// already, so none is expected to fail; an input schema that does is left out, and
    /// calls to its action are refused with `invalid_schema`.
    pub(crate) fn compile(catalog: &Catalog) -> Schemas {
        let mut schemas = Schemas::default();
        for (skill, found) in &catalog.skills {
            for (action, declared) in &found.manifest.actions {
                let key = (skill.clone(), action.clone());
                if let Ok(validator) = jsonschema::validator_for(&declared.input) {
                    schemas.inputs.insert(key.clone(), validator);
                }
                if let Some(Ok(validator)) = declared.output.as_ref().map(jsonschema::validator_for)
                {
                    schemas.outputs.insert(key, validator);
                }
            }
        }
        schemas
    }

    /// The input validator of `action` of `skill`.
    pub(crate) fn input(&self, skill: &str, action: &str) -> Option<&jsonschema::Validator> {
        self.inputs.get(&(skill.to_string(), action.to_string()))
    }

    /// Check an ok `output` against the action's declared output schema: the error a
    /// mismatch gives (`protocol_error`, code `output_schema`), naming each path.
    pub(crate) fn check_output(
        &self,
        skill: &str,
        action: &str,
        output: &Value,
    ) -> Result<(), InvocationError> {
        let Some(validator) = self.outputs.get(&(skill.to_string(), action.to_string())) else {
            return Ok(());
        };
        let problems = violations(validator, output);
        if problems.is_empty() {
            return Ok(());
        }
        let listed: Vec<String> = problems
            .iter()
            .map(|(path, message)| match path.as_str() {
                "" => message.clone(),
                at => format!("{at}: {message}"),
            })
            .collect();
        let mut error = InvocationError::new(
            codes::OUTPUT_SCHEMA,
            format!(
                "the output of {skill} {action} does not match its declared output schema: {}",
                listed.join("; ")
            ),
        );
        error.details = Some(json!({
            "problems": problems
                .iter()
                .map(|(path, message)| json!({"path": path, "message": message}))
                .collect::<Vec<_>>(),
            "output": output,
        }));
        Err(error)
    }
}

/// Each violation of `validator` by `value`: its JSON Pointer and message.
pub(crate) fn violations(
    validator: &jsonschema::Validator,
    value: &Value,
) -> Vec<(String, String)> {
    validator
        .iter_errors(value)
        .take(MAX_LISTED_PROBLEMS)
        .map(|e| (e.instance_path().to_string(), e.to_string()))
        .collect()
}

impl std::fmt::Debug for Schemas {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Schemas")
            .field("inputs", &self.inputs.keys().collect::<Vec<_>>())
            .field("outputs", &self.outputs.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Skill;
    use crate::manifest::Manifest;

    fn schemas() -> Schemas {
        let manifest = Manifest::parse(
            r#"
name: t
version: 0.1.0
protocol: "^1"
description: d
actions:
  count:
    description: d
    input: {type: object}
    output:
      type: object
      required: [n]
      properties: {n: {type: integer}}
  free:
    description: d
    input: {type: object}
"#,
        )
        .unwrap();
        let mut catalog = Catalog::default();
        catalog.skills.insert(
            "t".into(),
            Skill {
                manifest,
                dir: Default::default(),
                relative_dir: Default::default(),
            },
        );
        Schemas::compile(&catalog)
    }

    #[test]
    fn an_output_that_keeps_the_contract_passes() {
        assert!(schemas()
            .check_output("t", "count", &json!({"n": 3}))
            .is_ok());
    }

    #[test]
    fn a_broken_contract_names_each_path() {
        let error = schemas()
            .check_output("t", "count", &json!({"n": "three"}))
            .unwrap_err();
        assert_eq!(error.code, codes::OUTPUT_SCHEMA);
        assert!(error.message.contains("/n: "), "{}", error.message);
        let details = error.details.unwrap();
        assert_eq!(details["problems"][0]["path"], "/n");
        assert_eq!(details["output"], json!({"n": "three"}));
        let missing = schemas()
            .check_output("t", "count", &json!({}))
            .unwrap_err();
        assert!(
            missing.message.contains("\"n\" is a required property"),
            "{}",
            missing.message
        );
    }

    #[test]
    fn an_action_without_an_output_schema_has_no_contract() {
        assert!(schemas()
            .check_output("t", "free", &json!([1, "x"]))
            .is_ok());
    }
}
