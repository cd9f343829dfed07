// Corpus tests list their cases in one function each; the 100-line bound is for the
// library's own code.
#![allow(clippy::too_many_lines)]

use super::units::MIB;
use super::*;

const GOOD: &str = r#"name: echo
version: 1.2.0
protocol: "^1"
description: Echo text back.
build:
  args: {MODE: fast}
  inputs: [../../skill-sdk]
  command: [cargo, build]
  outputs: {skill: ../../target/skill}
run:
  user: "10001:10001"
  limits: {cpus: 0.5, memory: 128m, pids: 64, timeout: 10s, output: 1MiB, tmpfs: {/tmp: 16m}}
  network: none
  env: [LANG]
actions:
  say:
    description: Return the text.
    input: {type: object, required: [text], properties: {text: {type: string}}}
examples:
  - {action: say, args: {text: hi}, expect: {text: hi}}
"#;

#[test]
fn a_session_takes_its_defaults_and_ceilings() {
    let text = GOOD.replace(
        "  env: [LANG]\n",
        "  env: [LANG]\n  session: {mode: process, idle_timeout: 2m, max_lifetime: 4h}\n",
    );
    let m = Manifest::parse(&text).unwrap();
    let session = m.run.session.unwrap();
    assert_eq!(session.mode, SessionMode::Process);
    assert_eq!(
        session.idle_ceiling().0.as_secs(),
        120,
        "the default is the ceiling"
    );
    assert_eq!(session.lifetime.0.as_secs(), 3600);
    assert_eq!(session.lifetime_ceiling().0.as_secs(), 4 * 3600);
    assert_eq!(session.workspace.0, 64 * MIB);
}

#[test]
fn the_design_example_parses() {
    let m = Manifest::parse(GOOD).unwrap();
    assert_eq!(m.name, "echo");
    assert_eq!(m.run.limits.memory.0, 128 * MIB);
    assert_eq!(m.run.limits.timeout.0, std::time::Duration::from_secs(10));
    assert_eq!(m.run.user.0, "10001:10001");
    assert_eq!(m.repository(), "skill-echo");
}

#[test]
fn defaults_are_the_hardened_ones() {
    let m = Manifest::parse("name: a\nversion: 0.1.0\nprotocol: '1'\nactions: {go: {}}\n").unwrap();
    assert_eq!(m.run.user.0, DEFAULT_USER);
    assert_eq!(m.run.network, Network::None);
    assert!(m.run.env.is_empty());
    assert_eq!(m.actions["go"].input, serde_json::json!({"type": "object"}));
}

/// Replace one line of the good manifest, or pass a whole document.
fn variant(from: &str, to: &str) -> String {
    assert!(GOOD.contains(from), "{from}");
    GOOD.replacen(from, to, 1)
}

fn problems(text: &str) -> Vec<Problem> {
    match Manifest::parse(text) {
        Ok(m) => panic!("accepted a bad manifest: {m:?}\n{text}"),
        Err(p) => p,
    }
}

#[test]
fn an_action_whose_tool_name_is_too_long_for_the_chat_apis_is_refused() {
    let long = "a".repeat(60);
    let text =
        format!("name: {long}\nversion: 0.1.0\nprotocol: '1'\nactions: {{go: {{}}, run: {{}}}}\n");
    let found = problems(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].field, "actions.run");
    assert!(
        found[0].message.contains("at most 64"),
        "{}",
        found[0].message
    );
}

#[test]
fn bad_manifests_each_get_their_own_located_error() {
    let cases: Vec<(&str, String, &str, &str, Option<usize>)> = vec![
        // (case, text, field, message fragment, line)
        ("empty", String::new(), "", "manifest is empty", None),
        ("whitespace", "  \n\n".into(), "", "manifest is empty", None),
        (
            "lone brace",
            "{".into(),
            "",
            "did not find expected node content",
            Some(2),
        ),
        (
            "a list",
            "- 1\n".into(),
            "",
            "invalid type: sequence, expected struct Manifest",
            Some(1),
        ),
        (
            "wrong type",
            variant("version: 1.2.0", "version: [1]"),
            "version",
            "invalid type: sequence",
            Some(2),
        ),
        (
            "bad semver",
            variant("version: 1.2.0", "version: one"),
            "version",
            "unexpected character",
            Some(2),
        ),
        (
            "unknown key",
            variant("description:", "descripton:"),
            "descripton",
            "unknown field `descripton`",
            Some(4),
        ),
        (
            "unknown nested key",
            variant("network: none", "netwrk: none"),
            "run.netwrk",
            "unknown field `netwrk`",
            Some(13),
        ),
        (
            "root user",
            variant("\"10001:10001\"", "root"),
            "run.user",
            "is root",
            Some(11),
        ),
        (
            "uid 0",
            variant("\"10001:10001\"", "0"),
            "run.user",
            "is root",
            Some(11),
        ),
        (
            "gid 0",
            variant("\"10001:10001\"", "\"10001:0\""),
            "run.user",
            "group \"0\" is root",
            Some(11),
        ),
        (
            "timeout 0",
            variant("timeout: 10s", "timeout: 0s"),
            "run.limits.timeout",
            "above 0",
            Some(12),
        ),
        (
            "memory 1m",
            variant("memory: 128m", "memory: 1m"),
            "run.limits.memory",
            "below Docker's minimum memory limit of 6MiB",
            Some(12),
        ),
        (
            "pids 0",
            variant("pids: 64", "pids: 0"),
            "run.limits.pids",
            "at least 1 process",
            Some(12),
        ),
        (
            "bad unit",
            variant("memory: 128m", "memory: 128q"),
            "run.limits.memory",
            "unknown size unit",
            Some(12),
        ),
        (
            "negative cpus",
            variant("cpus: 0.5", "cpus: -1"),
            "run.limits.cpus",
            "negative",
            Some(12),
        ),
        (
            "host network",
            variant("network: none", "network: host"),
            "run.network",
            "unknown network \"host\", expected none, bridge or {egress: [host:port, ...]}",
            Some(13),
        ),
        (
            "protocol 2",
            variant("\"^1\"", "\"^2\""),
            "protocol",
            "requires protocol ^2, but this host speaks protocol 1.0.0",
            Some(3),
        ),
        (
            "bad schema",
            variant(
                "{type: object, required: [text]",
                "{type: objekt, required: [text]",
            ),
            "actions.say.input",
            "not a valid JSON Schema",
            Some(18),
        ),
        (
            "unknown example action",
            variant("{action: say,", "{action: shout,"),
            "examples[0].action",
            "no action \"shout\"; the skill has: say",
            Some(20),
        ),
        (
            "example args",
            variant("args: {text: hi}", "args: {text: 3}"),
            "examples[0].args",
            "does not match the input schema",
            Some(20),
        ),
        (
            "subset without expect",
            variant("expect: {text: hi}", "expect_error: nope, match: subset"),
            "examples[0].match",
            "match: subset compares with expect",
            Some(20),
        ),
        (
            "expect against the output schema",
            variant(
                "properties: {text: {type: string}}}\n",
                "properties: {text: {type: string}}}\n    output: {required: [words]}\n",
            ),
            "examples[0].expect",
            "does not match the output schema of \"say\"",
            Some(21),
        ),
        (
            "bad name",
            variant("name: echo", "name: Echo_1"),
            "name",
            "not a valid skill name",
            Some(1),
        ),
        (
            "tmpfs root",
            variant("{/tmp: 16m}", "{/: 16m}"),
            "run.limits.tmpfs./",
            "cannot be a tmpfs",
            Some(12),
        ),
        (
            "bad env",
            variant("env: [LANG]", "env: [\"A-B\"]"),
            "run.env[0]",
            "not a valid environment variable name",
            Some(14),
        ),
        (
            "escaping dockerfile",
            variant("build:\n", "build:\n  dockerfile: ../Dockerfile\n"),
            "build.dockerfile",
            "inside the skill directory",
            Some(6),
        ),
        (
            "no actions",
            variant("actions:\n  say:", "actions: {}\n  xsay:"),
            "",
            "",
            None,
        ),
        (
            "duplicate key",
            variant("name: echo\n", "name: echo\nname: echo2\n"),
            "",
            "duplicate",
            Some(2),
        ),
    ];
    for (case, text, field, fragment, line) in cases {
        let found = problems(&text);
        let hit = found
            .iter()
            .find(|p| p.field == field && p.message.contains(fragment))
            .unwrap_or_else(|| {
                panic!("{case}: no problem at {field:?} containing {fragment:?} in {found:?}")
            });
        if let Some(line) = line {
            assert_eq!(hit.position.map(|p| p.0), Some(line), "{case}: {hit:?}");
        }
    }
}

#[test]
fn every_validation_problem_is_reported_at_once() {
    let text = variant("memory: 128m", "memory: 1m").replace("timeout: 10s", "timeout: 0s");
    let fields: Vec<String> = problems(&text).into_iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        [
            "run.limits.memory",
            "run.limits.timeout",
            "run.limits.tmpfs./tmp"
        ]
    );
}

#[test]
fn file_errors_name_the_file_and_position() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(MANIFEST_FILE);
    std::fs::write(&path, variant("memory: 128m", "memory: 1m")).unwrap();
    let err = Manifest::load(&path).unwrap_err().to_string();
    let expected = format!("{}:12:", path.display());
    assert!(err.starts_with(&expected), "{err}");
    assert!(err.contains("run.limits.memory: 1MiB is below"), "{err}");

    std::fs::write(&path, "#".repeat(10 * 1024 * 1024)).unwrap();
    let err = Manifest::load(&path).unwrap_err();
    assert!(
        matches!(err, ManifestError::TooLarge { size, .. } if size == 10 * 1024 * 1024),
        "{err}"
    );
    assert!(err.to_string().contains("over the 1048576-byte limit"));

    let err = Manifest::load(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(
        err.to_string()
            .contains("missing.yaml: cannot read manifest"),
        "{err}"
    );
}

#[test]
fn alias_bombs_are_refused() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let prev = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}, *a{prev}]\n"
        ));
    }
    let found = problems(&text);
    assert!(!found.is_empty());
}

#[test]
fn manifests_asking_for_more_privilege_are_refused_with_the_field_named() {
    let run_extra =
        |line: &str| variant("  network: none\n", &format!("  network: none\n  {line}\n"));
    let cases: Vec<(&str, String, &str, &str)> = vec![
        (
            "root by name",
            variant("\"10001:10001\"", "root"),
            "run.user",
            "is root",
        ),
        (
            "uid 0",
            variant("\"10001:10001\"", "\"0:10001\""),
            "run.user",
            "is root",
        ),
        (
            "root group",
            variant("\"10001:10001\"", "\"10001:root\""),
            "run.user",
            "is root",
        ),
        (
            "privileged",
            run_extra("privileged: true"),
            "run.privileged",
            "unknown field `privileged`",
        ),
        (
            "host network",
            variant("network: none", "network: host"),
            "run.network",
            "unknown network \"host\"",
        ),
        (
            "container network",
            variant("network: none", "network: \"container:x\""),
            "run.network",
            "unknown network",
        ),
        (
            "cap_add",
            run_extra("cap_add: [SYS_ADMIN]"),
            "run.cap_add",
            "unknown field `cap_add`",
        ),
        (
            "bind of /",
            run_extra("binds: [\"/:/host\"]"),
            "run.binds",
            "unknown field `binds`",
        ),
        (
            "docker socket",
            run_extra("volumes: [\"/var/run/docker.sock:/var/run/docker.sock\"]"),
            "run.volumes",
            "unknown field",
        ),
        (
            "seccomp unconfined",
            run_extra("security_opt: [seccomp=unconfined]"),
            "run.security_opt",
            "unknown field",
        ),
        (
            "writable root",
            run_extra("read_only: false"),
            "run.read_only",
            "unknown field",
        ),
        (
            "host pid",
            run_extra("pid: host"),
            "run.pid",
            "unknown field",
        ),
        (
            "workspace path",
            run_extra("workspace: /"),
            "run.workspace",
            "unknown variant `/`",
        ),
        (
            "tmpfs over /proc",
            variant("{/tmp: 16m}", "{/proc/sys: 16m}"),
            "run.limits.tmpfs./proc/sys",
            "cannot be a tmpfs",
        ),
        (
            "no limits",
            variant("pids: 64", "pids: -1"),
            "run.limits.pids",
            "out of range",
        ),
        (
            "prewarm with serve",
            run_extra("mode: serve\n  prewarm: 2"),
            "run.prewarm",
            "one-shot mode",
        ),
        (
            "prestart with serve",
            run_extra("mode: serve\n  prestart: true"),
            "run.prestart",
            "one-shot mode",
        ),
        (
            "recycle with serve",
            run_extra("mode: serve\n  recycle: {}"),
            "run.recycle",
            "one-shot mode",
        ),
        (
            "no recycled containers",
            run_extra("recycle: {containers: 0}"),
            "run.recycle.containers",
            "out of range",
        ),
        (
            "recycled containers never used",
            run_extra("recycle: {uses: 0}"),
            "run.recycle.uses",
            "at least 1 call",
        ),
        (
            "recycle key misspelt",
            run_extra("recycle: {max_uses: 5}"),
            "run.recycle.max_uses",
            "unknown field",
        ),
        (
            "session default above its ceiling",
            run_extra("session: {mode: files, idle_timeout: 10m, max_idle_timeout: 1m}"),
            "run.session.max_idle_timeout",
            "give at least idle_timeout",
        ),
        (
            "session of an unknown mode",
            run_extra("session: {mode: notebook}"),
            "run.session.mode",
            "unknown variant `notebook`",
        ),
        (
            "session workspace too small",
            run_extra("session: {mode: files, workspace: 4k}"),
            "run.session.workspace",
            "out of range",
        ),
        (
            "session of a networked skill",
            variant(
                "network: none\n",
                "network: bridge\n  session: {mode: files}\n",
            ),
            "run.session.mode",
            "network: none",
        ),
        (
            "session key misspelt",
            run_extra("session: {mode: files, idle: 1m}"),
            "run.session.idle",
            "unknown field",
        ),
        (
            "too many prewarmed",
            run_extra("prewarm: 1000"),
            "run.prewarm",
            "out of range",
        ),
        (
            "no workers",
            run_extra("serve: {workers: 0}"),
            "run.serve.workers",
            "out of range",
        ),
        (
            "egress to an address",
            variant(
                "network: none",
                "network: {egress: [api.example.com:443, 169.254.169.254:80]}",
            ),
            "run.network.egress[1]",
            "IP addresses are not allowed",
        ),
        (
            "egress to nothing",
            variant("network: none", "network: {egress: []}"),
            "run.network.egress",
            "name 1 to 64 destinations",
        ),
        (
            "egress twice",
            variant(
                "network: none",
                "network: {egress: [a.test:443, A.test:443]}",
            ),
            "run.network.egress[1]",
            "a.test:443 is listed twice",
        ),
        (
            "egress beside something else",
            variant(
                "network: none",
                "network: {egress: [a.test:443], ports: [80]}",
            ),
            "run.network",
            "unknown key \"ports\" beside egress",
        ),
        (
            "unknown mode",
            run_extra("mode: daemon"),
            "run.mode",
            "unknown variant `daemon`",
        ),
    ];
    for (case, text, field, fragment) in cases {
        let found = problems(&text);
        assert!(
            found
                .iter()
                .any(|p| p.field == field && p.message.contains(fragment) && p.position.is_some()),
            "{case}: expected {field:?} with {fragment:?}, got {found:?}"
        );
    }
}

#[test]
fn a_manifest_round_trips_through_the_image_label() {
    let manifest = Manifest::parse(GOOD).unwrap();
    let label = serde_json::to_string(&manifest).unwrap();
    assert_eq!(Manifest::from_image_label(&label).unwrap(), manifest);
    let tampered = label.replace("\"10001:10001\"", "\"0:0\"");
    assert!(
        Manifest::from_image_label(&tampered).is_err(),
        "a label is validated again"
    );
}

/// `SKILLHOST_BLESS=1 cargo test -p skillhost manifest_schema` rewrites the committed copy.
#[test]
fn the_committed_manifest_schema_matches_the_code() {
    let generated = super::json_schema();
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/manifest.schema.json");
    if std::env::var_os("SKILLHOST_BLESS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/manifest.schema.json differs from what the code generates; run `SKILLHOST_BLESS=1 cargo test -p skillhost manifest_schema` and commit it"
    );
}

#[test]
fn every_bundled_manifest_matches_the_manifest_schema_and_typos_do_not() {
    let schema: serde_json::Value = serde_json::from_str(&super::json_schema()).unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut checked = 0;
    for dir in ["skills", "host/tests/fixtures"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path().join("skill.yaml");
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            // The fixtures' name is filled in by the tests that copy them.
            let text = text.replace("FIXTURE", "fixture");
            if Manifest::parse(&text).is_err() {
                continue; // The broken fixtures are broken on purpose.
            }
            let value: serde_json::Value = serde_yaml::from_str(&text).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .map(|e| format!("{}: {e}", e.instance_path()))
                .collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} manifests checked");
    let typo: serde_json::Value = serde_yaml::from_str(
        "name: t\nversion: 0.1.0\nprotocol: \"^1\"\nrun: {limits: {memroy: 64m}}\nactions: {a: {}}\n",
    )
    .unwrap();
    assert!(
        !validator.is_valid(&typo),
        "a misspelt limit is caught by the editor too"
    );
    let bad_size: serde_json::Value = serde_yaml::from_str(
        "name: t\nversion: 0.1.0\nprotocol: \"^1\"\nrun: {limits: {memory: lots}}\nactions: {a: {}}\n",
    )
    .unwrap();
    assert!(!validator.is_valid(&bad_size));
}

#[test]
fn an_egress_allowlist_parses_and_survives_the_image_label() {
    let text = variant(
        "network: none",
        "network:\n    egress: [api.example.com:443, \"*.pypi.org:443\"]",
    );
    let m = Manifest::parse(&text).unwrap();
    let Network::Egress(destinations) = &m.run.network else {
        panic!("{:?}", m.run.network)
    };
    let names: Vec<String> = destinations.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["api.example.com:443", "*.pypi.org:443"]);
    let label = serde_json::to_string(&m).unwrap();
    assert!(label.contains(r#""network":{"egress":["api.example.com:443","*.pypi.org:443"]}"#));
    assert_eq!(Manifest::from_image_label(&label).unwrap(), m);
}

#[test]
fn a_manifest_that_is_not_utf8_is_refused_at_the_bad_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("skill.yaml");
    let mut bytes = GOOD
        .replace("Echo text back.", "Échos, text back")
        .into_bytes();
    let at = bytes.windows(4).position(|w| w == b"text").unwrap();
    bytes[at] = 0xff;
    std::fs::write(&path, bytes).unwrap();
    let err = Manifest::load(&path).unwrap_err();
    let ManifestError::Invalid { problems, .. } = &err else {
        panic!("{err:?}");
    };
    // Line 4, `description: Échos, ` is 20 characters: the bad byte is the 21st.
    assert_eq!(problems[0].position, Some((4, 21)), "{err}");
    assert!(problems[0].message.contains("0xff"), "{err}");
    assert!(err.to_string().contains("skill.yaml:4:21:"), "{err}");
}
