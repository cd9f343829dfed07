//! One worker: a long-running container answering requests one at a time over its
//! attached stdin and stdout. A serve-mode skill reads the requests itself; a recycled
//! container's init does (the request carries a trailer key), runs the skill's command for
//! each and resets the container after it, and its trailer says how the call ended and
//! whether the reset left the container clean. A worker that fails a request in any way
//! (deadline, output limit, broken protocol, death, a reset short of clean) is never
//! given another.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use tokio::io::AsyncWriteExt;

use crate::engine::containers::{Chunk, Input, Output};
use crate::engine::spec::ContainerSpec;
use crate::engine::Containers;
use crate::run::container::{
    create_attached, err, exit_state, start_container, HostKill, RunError, RunOutcome, RunRequest,
    Streams,
};
use crate::run::exit_trailer::{call_header, ResetVerdict};

/// How long the output of a worker that broke the protocol is still watched.
const SETTLE_AFTER_ERROR: Duration = Duration::from_millis(300);
/// How long a worker that stopped answering gets to report its exit.
const EXIT_REPORT_BOUND: Duration = Duration::from_secs(2);

/// A running serve-mode container and its attached stdin and stdout.
pub(crate) struct Worker {
    pub(crate) name: String,
    id: String,
    input: Input,
    output: Output,
    born: Instant,
    pub(crate) last_used: Instant,
    pub(crate) served: u64,
    /// Its address on its egress network, learnt at its first request that has one.
    egress_client: Option<IpAddr>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Worker { name, served, .. } = self;
        f.debug_struct("Worker")
            .field("name", name)
            .field("served", served)
            .finish_non_exhaustive()
    }
}

/// What one request did to its worker.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) outcome: RunOutcome,
    /// The worker answered cleanly and may serve again.
    pub(crate) reusable: bool,
}

impl Worker {
    /// Create, attach and start a worker named `name`. The caller tracks the name with
    /// the reaper first, so a failure here leaves nothing behind.
    pub(crate) async fn start(
        engine: &Containers,
        name: &str,
        spec: &ContainerSpec,
    ) -> Result<Worker, RunError> {
        let attached = create_attached(engine, name, spec).await?;
        start_container(engine, &attached.id).await?;
        let now = Instant::now();
        Ok(Worker {
            name: attached.name,
            id: attached.id,
            input: attached.io.input,
            output: attached.io.output,
            born: now,
            last_used: now,
            served: 0,
            egress_client: None,
        })
    }

    pub(crate) fn age(&self) -> Duration {
        self.born.elapsed()
    }

    /// Take what arrived since the last answer, without waiting, before a new request.
    /// stderr is the last request's late logs: dropped, not handed to the next caller.
    /// Anything on stdout broke the protocol after the fact, and an ended stream is a dead
    /// worker: either way it must not answer again (false).
    pub(crate) fn ready_for_next(&mut self) -> bool {
        loop {
            match self.output.next().now_or_never() {
                None => return true,
                Some(Some(Ok(Chunk::Stderr(message)))) => {
                    tracing::debug!(worker = %self.name, bytes = message.len(), "dropping stderr written after an answer");
                }
                Some(_) => return false,
            }
        }
    }

    /// Send one request and read its frames until its result, the deadline, the output
    /// limit or the worker's end.
    pub(crate) async fn exchange(
        &mut self,
        engine: &Containers,
        request: &RunRequest,
    ) -> Result<Exchange, RunError> {
        self.served += 1;
        let deadline = tokio::time::Instant::now() + request.timeout;
        if let (Some(gateway), None) = (&request.egress, self.egress_client) {
            self.egress_client = gateway.address_of(engine.as_ref(), &self.id).await;
        }
        let mut streams = Streams::new(request);
        let mut host_kill = None;
        let mut ended = false;

        let mut stdin = match request.trailer_key.as_deref() {
            Some(key) => call_header(key, request.stdin.len()),
            None => Vec::new(),
        };
        stdin.extend_from_slice(&request.stdin);
        let written = tokio::time::timeout_at(deadline, async {
            self.input.write_all(&stdin).await?;
            self.input.flush().await
        })
        .await;
        match written {
            Err(_) => host_kill = Some(HostKill::Timeout),
            // A worker that cannot take input has ended; its exit says why.
            Ok(Err(_)) => ended = true,
            Ok(Ok(())) => {}
        }
        // After a protocol error the worker is lost anyway; a short look further tells a
        // flood (output_limit, as a cold container would report it) from a stray line.
        // A recycled container's init reports the end itself, whatever the skill wrote.
        let recycled = request.trailer_key.is_some();
        let mut settle_until = None;
        while host_kill.is_none() && !ended {
            if recycled {
                if streams.reported().is_some() {
                    break;
                }
            } else if streams.reader.is_done() {
                if streams.reader.has_result() {
                    break;
                }
                let until = *settle_until
                    .get_or_insert_with(|| tokio::time::Instant::now() + SETTLE_AFTER_ERROR);
                if tokio::time::Instant::now() >= until {
                    break;
                }
            }
            let settle = async {
                match settle_until {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = settle => break,
                chunk = self.output.next() => match chunk {
                    Some(Ok(chunk)) => {
                        if streams.take(chunk) {
                            host_kill = Some(HostKill::OutputLimit);
                        }
                    }
                    Some(Err(e)) => return Err(err("reading a worker's output")(e)),
                    None => ended = true,
                },
                _ = tokio::time::sleep_until(deadline) => host_kill = Some(HostKill::Timeout),
            }
        }
        let streams_partial = streams.reader.has_partial_line();
        let report = streams.reported().filter(|_| host_kill.is_none());
        let (mut exit_code, mut oom_killed) = (None, false);
        if let Some(report) = &report {
            exit_code = Some(report.code);
            oom_killed = report.oom_kills.is_some_and(|kills| kills > 0);
        }
        // A recycling init that could not count OOM kills ends the container after its
        // trailer: the engine's exit record has the flag.
        let unknown_oom = report.is_some_and(|r| r.oom_kills.is_none());
        if ended || unknown_oom {
            let _ = tokio::time::timeout(EXIT_REPORT_BOUND, engine.stopped(&self.id)).await;
            let (code, oom) = exit_state(engine, &self.id).await?;
            exit_code = exit_code.or(code);
            oom_killed |= oom;
        }
        let mut outcome = streams.into_outcome(exit_code, oom_killed, host_kill, Duration::ZERO);
        outcome.init_report = report;
        outcome.egress.client = self.egress_client;
        let decoded = &outcome.decoded;
        let reusable = host_kill.is_none()
            && !ended
            && if recycled {
                report.and_then(|r| r.reset) == Some(ResetVerdict::Clean)
            } else {
                // Bytes beyond the result would be read as the next request's answer.
                decoded.protocol_error.is_none() && decoded.result.is_some() && !streams_partial
            };
        self.last_used = Instant::now();
        Ok(Exchange { outcome, reusable })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(chunks: Vec<Chunk>, then_end: bool) -> Worker {
        let items = futures_util::stream::iter(chunks.into_iter().map(Ok));
        let output: Output = if then_end {
            Box::pin(items)
        } else {
            Box::pin(items.chain(futures_util::stream::pending()))
        };
        Worker {
            name: "w".into(),
            id: "w".into(),
            input: Box::pin(tokio::io::sink()),
            output,
            born: Instant::now(),
            last_used: Instant::now(),
            served: 1,
            egress_client: None,
        }
    }

    fn stderr(text: &str) -> Chunk {
        Chunk::Stderr(text.as_bytes().to_vec().into())
    }

    #[test]
    fn late_stderr_is_dropped_and_the_worker_stays() {
        let mut w = worker(vec![stderr("late log\n"), stderr("more\n")], false);
        assert!(w.ready_for_next());
        assert!(w.ready_for_next(), "nothing left to drop");
    }

    #[test]
    fn stdout_after_an_answer_or_an_ended_stream_retires_the_worker() {
        let stray = Chunk::Stdout(b"{\"type\":\"result\"}\n".to_vec().into());
        assert!(!worker(vec![stderr("log\n"), stray], false).ready_for_next());
        assert!(!worker(vec![], true).ready_for_next());
    }
}
