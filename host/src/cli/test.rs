//! `skillhost test [SKILL...]`: build each skill, run every example its manifest declares
//! as a real call, and report in the manner of cargo test and nextest: a line per
//! example, each failure with what to do and a diff of expected against actual, a
//! summary. Exit 0 only when everything passed.

use std::path::PathBuf;
use std::time::Instant;

use serde_json::Value;
use similar::{ChangeTag, TextDiff};
use skillhost::api::{exit_code, BrokenSkill, ExampleReport, Status, TestReport};
use skillhost::build::{ImageBuilder, ImageTarget};
use skillhost::catalog::{Catalog, Skill};
use skillhost::engine::Engine;
use skillhost::{examples, Error, Host, HostConfig};

use super::progress::Progress;
use super::{build, list, output, usage, Format};

#[derive(Debug, clap::Args)]
pub(crate) struct TestCli {
    /// Skills to test [default: every skill found; a broken manifest then fails the run].
    skills: Vec<String>,
}

pub(super) async fn run(roots: Vec<PathBuf>, cli: TestCli, format: Format) -> Result<i32, Error> {
    let started = Instant::now();
    let catalog = Catalog::discover(&roots)?;
    let (skills, broken) = if cli.skills.is_empty() {
        let broken: Vec<BrokenSkill> = catalog.broken.iter().map(list::broken_report).collect();
        (catalog.skills.values().collect::<Vec<_>>(), broken)
    } else {
        (
            build::select(&catalog, &cli.skills, false, None)?,
            Vec::new(),
        )
    };
    let (with, without): (Vec<&Skill>, Vec<&Skill>) = skills
        .into_iter()
        .partition(|s| !s.manifest.examples.is_empty());
    let without: Vec<String> = without.iter().map(|s| s.name().to_string()).collect();
    let count: usize = with.iter().map(|s| s.manifest.examples.len()).sum();
    if count == 0 && broken.is_empty() {
        return Err(usage(
            "no examples to run: give a skill examples in its skill.yaml, e.g. \
             `examples: [{action: say, args: {text: hi}, expect: {text: hi}}]` \
             (see docs/manifest.md)",
        ));
    }
    let human = format == Format::Human;
    if human {
        print_start(count, with.len(), &without);
    }
    if human {
        for problem in &broken {
            outln!("      BROKEN {}", problem.error);
        }
    }

    let engine = Engine::connect().await?;
    let progress = Progress::new();
    let builder = ImageBuilder::new(engine.clone(), progress.observer());
    let host = Host::with_engine(engine, HostConfig::new(roots)).await?;
    let mut reports = Vec::new();
    for skill in with {
        let built = builder.ensure(&ImageTarget::for_skill(skill), false).await;
        progress.finish(skill.name());
        match built {
            Ok(_) => {
                let ran = examples::run_skill(&host, skill, |report| {
                    if human {
                        print_line(report);
                        print_failure(report, skill);
                    }
                })
                .await;
                reports.extend(ran);
            }
            Err(e) => {
                let why = e.to_string();
                let unbuilt = examples::unbuilt(skill, &why);
                if human {
                    outln!("  BUILD FAIL {}\n{}", skill.name(), indent(&why, 4));
                    unbuilt.iter().for_each(print_line);
                }
                reports.extend(unbuilt);
            }
        }
    }
    host.shutdown().await;

    let infrastructure = reports.iter().any(|r| {
        r.result
            .as_ref()
            .is_some_and(|res| res.status == Status::InfrastructureError)
    });
    let report = TestReport::new(
        reports,
        without,
        broken,
        started.elapsed().as_millis() as u64,
    );
    match format {
        Format::Json => output::json(&report),
        Format::Human => print_summary(&report),
    }
    Ok(if report.all_passed() {
        exit_code::OK
    } else if infrastructure {
        exit_code::INFRASTRUCTURE
    } else {
        exit_code::SKILL_FAILED
    })
}

/// `1 example`, `2 examples`.
fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("{n} {one}")
    } else {
        format!("{n} {many}")
    }
}

fn print_start(count: usize, skills: usize, without: &[String]) {
    let mut line = format!(
        "    Starting {} across {}",
        plural(count, "example", "examples"),
        plural(skills, "skill", "skills")
    );
    if !without.is_empty() {
        line.push_str(&format!(
            " ({} without examples: {})",
            without.len(),
            without.join(", ")
        ));
    }
    outln!("{line}");
}

/// `        PASS [   0.412s] echo say[0]`
fn print_line(report: &ExampleReport) {
    let verdict = if report.passed() { "PASS" } else { "FAIL" };
    outln!(
        "        {verdict} [{:>8.3}s] {} {}",
        report.duration_ms as f64 / 1000.0,
        report.skill,
        report.name
    );
}

/// A failed example's every failure, with a diff where values were compared, how to run
/// it again, and the skill's stderr.
fn print_failure(report: &ExampleReport, skill: &Skill) {
    if report.passed() {
        return;
    }
    outln!(
        "\n--- FAIL: {} {} ({})",
        report.skill,
        report.name,
        report.location
    );
    for failure in &report.failures {
        outln!("{}", indent(&failure.message, 4));
        if let (Some(expected), Some(actual)) = (&failure.expected, &failure.actual) {
            if expected.is_object()
                || expected.is_array()
                || actual.is_object()
                || actual.is_array()
            {
                outln!("    - expected, + actual:");
                out!("{}", diff(expected, actual));
            }
        }
    }
    if let Some(command) = examples::rerun_command(skill, report.index) {
        outln!("    to run it alone: {command}");
    }
    if let Some(result) = report.result.as_ref().filter(|r| !r.logs.is_empty()) {
        let cut = if result.logs_truncated {
            ", cut at the log limit"
        } else {
            ""
        };
        outln!("    stderr of the skill{cut}:");
        outln!("{}", indent(result.logs.trim_end(), 6));
    }
    outln!("");
}

fn print_summary(report: &TestReport) {
    outln!("------------");
    let mut line = format!(
        "     Summary [{:>8.3}s] {} run: {} passed, {} failed",
        report.duration_ms as f64 / 1000.0,
        plural(report.examples.len(), "example", "examples"),
        report.passed,
        report.failed
    );
    if !report.broken.is_empty() {
        let broken = plural(report.broken.len(), "broken manifest", "broken manifests");
        line.push_str(&format!(", {broken}"));
    }
    outln!("{line}");
    for failed in report.examples.iter().filter(|r| !r.passed()) {
        print_line(failed);
    }
    for broken in &report.broken {
        outln!(
            "      BROKEN {}",
            broken.error.lines().next().unwrap_or_default()
        );
    }
}

/// A line diff of the two values as pretty JSON, each line marked `-`, `+` or ` `.
fn diff(expected: &Value, actual: &Value) -> String {
    let pretty =
        |v: &Value| serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()) + "\n";
    let (expected, actual) = (pretty(expected), pretty(actual));
    let mut text = String::new();
    for change in TextDiff::from_lines(&expected, &actual).iter_all_changes() {
        let sign = match change.tag() {
            ChangeTag::Delete => '-',
            ChangeTag::Insert => '+',
            ChangeTag::Equal => ' ',
        };
        text.push_str(&format!("      {sign} {}", change.value()));
    }
    text
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines()
        .map(|line| format!("{pad}{line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_diff_marks_only_the_lines_that_differ() {
        let text = diff(&json!({"a": 1, "b": "x"}), &json!({"a": 1, "b": "y"}));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "        {",
                "          \"a\": 1,",
                "      -   \"b\": \"x\"",
                "      +   \"b\": \"y\"",
                "        }",
            ]
        );
    }
}
