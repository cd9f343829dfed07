//! `skillhost test`: every example runs as a real call in the sandbox, and each way a
//! skill can break a promise (another output, another error code, a stray print, a bad
//! exit, an output off its schema, a Dockerfile that fails, a broken manifest) fails the
//! run with a report that says where and why.

use crate::common;

use std::process::Output;

use serde_json::Value;
use skillhost::api::exit_code;

use common::{
    copy_dir, copy_fixture, ensure_base_images, fixture, skillhost_test, unique_name, ImageCleanup,
};

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn each_broken_promise_fails_in_its_own_way_and_the_rest_pass() {
    ensure_base_images();
    let cleanup = ImageCleanup::default();
    let name = unique_name("judged");
    let dir = copy_fixture("judged", &name);

    let run = skillhost_test(dir.path(), &["--format", "json"], &cleanup);
    assert_eq!(
        run.status.code(),
        Some(exit_code::SKILL_FAILED),
        "{}",
        stdout(&run)
    );
    let report: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(
        (report["passed"].as_u64(), report["failed"].as_u64()),
        (Some(3), Some(5))
    );
    let by_name = |wanted: &str| {
        report["examples"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == wanted)
            .unwrap_or_else(|| panic!("no example {wanted}"))
            .clone()
    };
    let kinds = |wanted: &str| -> Vec<String> {
        by_name(wanted)["failures"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["kind"].as_str().unwrap().to_string())
            .collect()
    };
    for passing in ["exact", "subset", "error"] {
        assert!(kinds(passing).is_empty(), "{passing}: {:?}", kinds(passing));
    }
    assert_eq!(kinds("wrong output"), ["output"]);
    assert_eq!(kinds("wrong code"), ["error_code"]);
    assert_eq!(kinds("garbage"), ["status"]);
    assert_eq!(kinds("bad exit"), ["exit"]);
    assert_eq!(kinds("off schema"), ["status"]);

    let wrong = by_name("wrong output");
    assert_eq!(wrong["failures"][0]["expected"]["word"], "other");
    assert_eq!(wrong["failures"][0]["actual"]["word"], "echo");
    assert!(
        wrong["location"]
            .as_str()
            .unwrap()
            .ends_with("skill.yaml:22"),
        "{}",
        wrong["location"]
    );
    let garbage = &by_name("garbage")["failures"][0]["message"];
    assert!(
        garbage
            .as_str()
            .unwrap()
            .contains("stdout line 1 is not a protocol frame"),
        "{garbage}"
    );
    let off_schema = by_name("off schema");
    assert_eq!(off_schema["result"]["error"]["code"], "output_schema");

    // For people: a line per example, then each failure with its diff, then a summary.
    let run = skillhost_test(dir.path(), &[&name], &cleanup);
    assert_eq!(run.status.code(), Some(exit_code::SKILL_FAILED));
    let text = stdout(&run);
    assert!(text.contains("PASS ["), "{text}");
    assert!(
        text.contains(&format!("--- FAIL: {name} wrong output (")),
        "{text}"
    );
    assert!(text.contains("- expected, + actual:"), "{text}");
    assert!(text.contains("      -   \"word\": \"other\""), "{text}");
    assert!(text.contains("      +   \"word\": \"echo\""), "{text}");
    assert!(
        text.contains("stderr of the skill:\n      asked to echo"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "invoke {name} act --args '{{\"do\":\"garbage\"}}'"
        )),
        "{text}"
    );
    assert!(
        text.contains("8 examples run: 3 passed, 5 failed"),
        "{text}"
    );
}

#[test]
fn a_failing_dockerfile_and_a_broken_manifest_fail_the_run_and_are_named() {
    let cleanup = ImageCleanup::default();
    let root = tempfile::tempdir().unwrap();
    let name = unique_name("unbuilt");
    let skill = root.path().join(&name);
    copy_dir(&fixture("broken-dockerfile"), &skill);
    let manifest = std::fs::read_to_string(skill.join("skill.yaml")).unwrap();
    let manifest = manifest.replace("name: FIXTURE", &format!("name: {name}"))
        + "examples:\n  - {action: read}\n";
    std::fs::write(skill.join("skill.yaml"), manifest).unwrap();
    std::fs::create_dir(root.path().join("broken")).unwrap();
    std::fs::write(
        root.path().join("broken/skill.yaml"),
        "name: broken\nversion: one\n",
    )
    .unwrap();

    let run = skillhost_test(root.path(), &[], &cleanup);
    assert_eq!(run.status.code(), Some(exit_code::SKILL_FAILED));
    let text = stdout(&run);
    assert!(text.contains(&format!("BUILD FAIL {name}")), "{text}");
    assert!(text.contains("fix that step in "), "{text}");
    assert!(
        text.contains(&format!("FAIL [   0.000s] {name} read[0]")),
        "{text}"
    );
    assert!(
        text.contains("BROKEN ") && text.contains("broken/skill.yaml"),
        "{text}"
    );
    assert!(
        text.contains("1 example run: 0 passed, 1 failed, 1 broken manifest"),
        "{text}"
    );

    // Named, a skill without examples has nothing to run: a usage error that says what
    // to add.
    std::fs::remove_dir_all(root.path().join("broken")).unwrap();
    let manifest = std::fs::read_to_string(skill.join("skill.yaml")).unwrap();
    let without = manifest.replace("examples:\n  - {action: read}\n", "");
    std::fs::write(skill.join("skill.yaml"), without).unwrap();
    let run = skillhost_test(root.path(), &[&name], &cleanup);
    assert_eq!(run.status.code(), Some(exit_code::USAGE));
    let text = String::from_utf8_lossy(&run.stderr);
    assert!(text.contains("no examples to run"), "{text}");
}
