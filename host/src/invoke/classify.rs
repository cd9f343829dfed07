//! From what was observed of a container to the invocation's status. Pure, so each rule
//! is tested on its own.
//!
//! The order matters. What the host did (kill on deadline, kill on flood) explains
//! everything after it. A memory kill explains a missing or torn result, but only with
//! its evidence: `OOMKilled` alone is unreliable, so it takes exit 137 and no kill from us
//! too. The engine stopping the container (seen by skillhost's init) is the engine's
//! failure, not the skill's. Then stdout must be clean frames with one result; a clean
//! result is believed even when some child died for memory (that is reported as
//! `oom_killed`) or the engine stopped it after it answered.

use std::time::Duration;

use serde_json::Value;
use skillhost_api::{codes, InvocationError, InvocationResult, Stats, Status};

use crate::run::container::{HostKill, RunOutcome};
use crate::vocab::Refusal;

/// Exit code of a process killed by SIGKILL (128 + 9), as the init process reports it.
const SIGKILL_EXIT: i64 = 137;

/// Fill `result` from what was observed of the run: its status, output or error, exit,
/// logs and measurements.
pub(crate) fn fill(
    result: &mut InvocationResult,
    run: &RunOutcome,
    timeout: Duration,
    output_limit: u64,
) {
    let (status, output, error) = classify(run, timeout.as_millis(), output_limit);
    result.status = status;
    result.output = output;
    result.error = error;
    result.exit_code = run.exit_code;
    result.oom_killed = run.oom_killed;
    result.logs = String::from_utf8_lossy(&run.logs).into_owned();
    result.logs_truncated = run.logs_truncated;
    let mut stats = Stats::default();
    stats.stdout_bytes = run.decoded.bytes;
    stats.stderr_bytes = run.stderr_bytes;
    stats.progress_frames = run.decoded.progress_frames;
    stats.startup_ms = run.startup.as_millis() as u64;
    stats.peak_memory_bytes = run.peak_memory_bytes();
    result.stats = stats;
}

/// The status, output and error of an invocation that ran.
fn classify(
    run: &RunOutcome,
    timeout_ms: u128,
    output_limit: u64,
) -> (Status, Option<Value>, Option<InvocationError>) {
    // Each code comes with the status codes::ALL gives it, as every refusal's does.
    let fail = |code: &'static str, message: String| {
        let refusal = Refusal::new(code, message);
        let error = InvocationError::new(refusal.code, refusal.message);
        (refusal.status, None, Some(error))
    };
    match run.host_kill {
        Some(HostKill::Timeout) => {
            return fail(
                codes::TIMEOUT,
                format!("no result within {timeout_ms} ms; the container was killed"),
            )
        }
        Some(HostKill::OutputLimit) => {
            let message = format!(
                "stdout exceeded the {output_limit}-byte output limit; the container was killed"
            );
            return fail(codes::OUTPUT_LIMIT, message);
        }
        None => {}
    }
    let result = run
        .decoded
        .result
        .as_ref()
        .filter(|_| run.decoded.protocol_error.is_none());
    if result.is_none() && run.oom_killed && run.exit_code == Some(SIGKILL_EXIT) {
        return fail(
            codes::MEMORY_LIMIT,
            "the skill was killed for exceeding its memory limit".into(),
        );
    }
    if let (None, Some(signal)) = (result, run.stopped_by_engine()) {
        let message = format!("the engine stopped the container with signal {signal} (a `docker stop`, or the engine shutting down) before the skill answered");
        return fail(codes::ENGINE_STOPPED, message);
    }
    if let Some(error) = &run.decoded.protocol_error {
        return fail(codes::PROTOCOL_ERROR, error.clone());
    }
    match result.map(|r| r.outcome()) {
        Some(Ok(Ok(output))) => (Status::Ok, Some(output.clone()), None),
        Some(Ok(Err(body))) => (
            Status::SkillError,
            None,
            Some(
                InvocationError::new(body.code.clone(), body.message.clone())
                    .with_details(body.details.clone()),
            ),
        ),
        // parse_line already refused inconsistent frames.
        Some(Err(e)) => fail(codes::PROTOCOL_ERROR, e.to_string()),
        None => match run.exit_code {
            Some(0) => fail(
                codes::PROTOCOL_ERROR,
                "the skill exited without writing a result frame".into(),
            ),
            Some(code) => fail(
                codes::CRASHED,
                format!("the skill exited with code {code} without a result"),
            ),
            None => fail(
                codes::CRASHED,
                "the skill ended without a result or an exit code".into(),
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::exit_trailer::ExitReport;
    use crate::run::frame_reader::Decoded;
    use serde_json::json;
    use skill_sdk::protocol::ResultFrame;
    use skill_sdk::ErrorBody;
    use std::time::Duration;

    fn run(result: Option<ResultFrame>, exit: i64) -> RunOutcome {
        RunOutcome {
            exit_code: Some(exit),
            oom_killed: false,
            host_kill: None,
            decoded: Decoded {
                result,
                protocol_error: None,
                bytes: 0,
                progress_frames: 0,
            },
            logs: Vec::new(),
            logs_truncated: false,
            stderr_bytes: 0,
            startup: Duration::ZERO,
            init_report: None,
            egress: Default::default(),
        }
    }

    fn status(r: &RunOutcome) -> Status {
        classify(r, 1000, 100).0
    }

    #[test]
    fn results_map_to_ok_and_skill_error() {
        let (s, output, error) = classify(&run(Some(ResultFrame::ok("r", json!(1))), 0), 1000, 100);
        assert_eq!((s, output, error), (Status::Ok, Some(json!(1)), None));
        let r = run(Some(ResultFrame::err("r", ErrorBody::new("bad", "no"))), 0);
        let (s, _, error) = classify(&r, 1000, 100);
        assert_eq!(
            (s, error.unwrap().code.as_str()),
            (Status::SkillError, "bad")
        );
    }

    #[test]
    fn host_kills_come_first() {
        let mut r = run(Some(ResultFrame::ok("r", json!(1))), 137);
        r.host_kill = Some(HostKill::Timeout);
        r.oom_killed = true;
        assert_eq!(status(&r), Status::Timeout);
        r.host_kill = Some(HostKill::OutputLimit);
        assert_eq!(status(&r), Status::OutputLimit);
    }

    #[test]
    fn memory_needs_the_flag_exit_137_and_no_result() {
        let mut r = run(None, 137);
        r.oom_killed = true;
        assert_eq!(status(&r), Status::MemoryLimit);
        // A torn line from the kill does not hide the memory limit.
        r.decoded.protocol_error = Some("EOF".into());
        assert_eq!(status(&r), Status::MemoryLimit);
        // The flag alone, with a clean exit, is not a memory kill of the skill.
        let mut r = run(None, 1);
        r.oom_killed = true;
        assert_eq!(status(&r), Status::Crashed);
        // A child died for memory, the skill still answered.
        let mut r = run(Some(ResultFrame::ok("r", json!(1))), 0);
        r.oom_killed = true;
        assert_eq!(status(&r), Status::Ok);
    }

    fn stopped_by_engine(r: &mut RunOutcome, signal: i32) {
        r.init_report = Some(ExitReport {
            code: r.exit_code.unwrap(),
            oom_kills: Some(0),
            peak_memory_bytes: None,
            outside_signal: Some(signal),
            reset: None,
        });
    }

    #[test]
    fn an_engine_stop_before_the_answer_is_the_engines_failure() {
        let mut r = run(None, 143);
        stopped_by_engine(&mut r, 15);
        r.decoded.protocol_error = Some("EOF in the middle of a line".into());
        let (s, _, error) = classify(&r, 1000, 100);
        assert_eq!(
            (s, error.unwrap().code.as_str()),
            (Status::InfrastructureError, "engine_stopped")
        );
        // After the answer, the answer stands.
        let mut r = run(Some(ResultFrame::ok("r", json!(1))), 143);
        stopped_by_engine(&mut r, 15);
        assert_eq!(status(&r), Status::Ok);
        // The same exit without the engine's signal is the skill's crash.
        assert_eq!(status(&run(None, 143)), Status::Crashed);
    }

    #[test]
    fn no_result_is_protocol_error_or_crash() {
        assert_eq!(status(&run(None, 0)), Status::ProtocolError);
        assert_eq!(status(&run(None, 3)), Status::Crashed);
        assert_eq!(status(&run(None, 137)), Status::Crashed);
        let mut r = run(Some(ResultFrame::ok("r", json!(1))), 0);
        r.decoded.protocol_error = Some("line 2 follows the result frame".into());
        let (s, _, error) = classify(&r, 1000, 100);
        assert_eq!(s, Status::ProtocolError);
        assert!(error.unwrap().message.contains("follows the result"));
    }

    #[test]
    fn every_status_comes_with_its_documented_code() {
        let mut runs = vec![run(None, 0), run(None, 3), run(None, 137)];
        let mut oom = run(None, 137);
        oom.oom_killed = true;
        runs.push(oom);
        for kill in [HostKill::Timeout, HostKill::OutputLimit] {
            let mut r = run(None, 137);
            r.host_kill = Some(kill);
            runs.push(r);
        }
        let mut stopped = run(None, 143);
        stopped_by_engine(&mut stopped, 15);
        runs.push(stopped);
        let mut garbled = run(None, 0);
        garbled.decoded.protocol_error = Some("not JSON".into());
        runs.push(garbled);
        for r in &runs {
            let (status, _, error) = classify(r, 1000, 100);
            let code = error.unwrap().code;
            assert_eq!(codes::status_of(&code), Some(status), "{code}");
        }
    }
}
