//! A worker process: keeps its share of the subscribers connected and reports their deliveries.
//!
//! The coordinator starts workers because one process may open only so many sockets (20,000
//! on the machine this was written for, a hard limit). Each worker runs one thread. Its plan
//! arrives as the first line of stdin, and it stops by itself at the plan's deadline even if
//! the finish line never comes.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::plan::{SubscriberSpec, WorkerPlan};
use crate::protocol::{FINISH, StalledReport, WorkerMessage, WorkerReport};
use crate::subscriber::{self, Ending, Shared};

/// Time between progress lines.
const PROGRESS_INTERVAL: Duration = Duration::from_millis(200);

/// How long the worker waits for its subscribers to close after the end of the run.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Error that stops a worker.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("reading the plan from stdin failed: {0}")]
    ReadPlan(io::Error),

    #[error("stdin closed before the plan arrived")]
    NoPlan,

    #[error("invalid plan on stdin: {0}")]
    InvalidPlan(serde_json::Error),

    #[error("writing to stdout failed: {0}")]
    Write(io::Error),
}

/// Result of one subscriber's handshake, sent to the worker's main task.
type Handshake = (SubscriberSpec, Result<(), String>);

/// The result of a subscriber task: how its stream ended, or why it never got one.
type Outcome = (SubscriberSpec, Result<Ending, String>);

/// Runs a worker to the end of its plan.
pub async fn run() -> Result<(), WorkerError> {
    let mut stdin = BufReader::new(tokio::io::stdin()).lines();
    let line = stdin
        .next_line()
        .await
        .map_err(WorkerError::ReadPlan)?
        .ok_or(WorkerError::NoPlan)?;
    let plan: Arc<WorkerPlan> =
        Arc::new(serde_json::from_str(&line).map_err(WorkerError::InvalidPlan)?);
    let deadline = Instant::now() + plan.deadline;
    let mut stdout = tokio::io::stdout();

    let shared = Arc::new(Shared::new(plan.run_id));
    let (finish_sender, finish) = watch::channel(false);
    let specs = plan.subscribers();
    let (handshakes, mut handshake_results) = mpsc::channel(specs.len().max(1));
    let mut tasks = start_subscribers(&plan, &shared, &specs, handshakes, finish);

    // Ready once every reader has connected or failed, or at the deadline.
    let mut readers_per_channel = vec![0; plan.channels as usize];
    let mut stalled = 0;
    let mut failed = BTreeMap::new();
    for _ in 0..specs.len() {
        match tokio::time::timeout_at(deadline, handshake_results.recv()).await {
            Ok(Some((spec, Ok(())))) if spec.stalled => stalled += 1,
            Ok(Some((spec, Ok(())))) => readers_per_channel[spec.channel as usize] += 1,
            Ok(Some((_, Err(reason)))) => *failed.entry(reason).or_insert(0) += 1,
            Ok(None) | Err(_) => break,
        }
    }
    let ready = WorkerMessage::Ready {
        readers_per_channel,
        stalled,
        failed,
    };
    send(&mut stdout, &ready).await?;

    // Report progress until the coordinator sends the finish line, closes stdin, or time is up.
    let mut progress = tokio::time::interval(PROGRESS_INTERVAL);
    loop {
        tokio::select! {
            line = stdin.next_line() => match line {
                Ok(Some(line)) if line.trim() != FINISH => continue,
                _ => break,
            },
            _ = progress.tick() => {
                let deliveries = shared.deliveries.load(Ordering::Relaxed);
                let closed_early = shared.closed_early.load(Ordering::Relaxed);
                let line = WorkerMessage::Progress { deliveries, closed_early };
                send(&mut stdout, &line).await?;
            }
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }

    // Sending fails only when every subscriber task has already ended, which needs no signal.
    let _ = finish_sender.send(true);
    let (outcomes, stuck) = collect(&mut tasks).await;
    let report = build_report(&plan, &shared, outcomes, stuck);
    send(&mut stdout, &WorkerMessage::Report(Box::new(report))).await
}

/// Spawns one task per subscriber, each starting at its place in the ramp.
fn start_subscribers(
    plan: &Arc<WorkerPlan>,
    shared: &Arc<Shared>,
    specs: &[SubscriberSpec],
    handshakes: mpsc::Sender<Handshake>,
    finish: watch::Receiver<bool>,
) -> JoinSet<Outcome> {
    let start = Instant::now();
    let gate = Arc::new(Semaphore::new(plan.max_handshakes as usize));
    let mut tasks = JoinSet::new();
    for spec in specs.iter().cloned() {
        let at = start + Duration::from_secs_f64(f64::from(spec.local_index) / plan.ramp_rate);
        let (plan, shared, gate) = (plan.clone(), shared.clone(), gate.clone());
        let (handshakes, finish) = (handshakes.clone(), finish.clone());
        tasks.spawn(async move {
            tokio::time::sleep_until(at).await;
            let opened = {
                // Nothing closes the semaphore, so acquiring always yields a permit.
                let _permit = gate.acquire().await;
                subscriber::open(&plan, &spec).await
            };
            let stream = match opened {
                Ok(stream) => stream,
                Err(error) => {
                    let reason = error.reason();
                    let _ = handshakes.send((spec.clone(), Err(reason.clone()))).await;
                    return (spec, Err(reason));
                }
            };
            let _ = handshakes.send((spec.clone(), Ok(()))).await;
            let ending = if spec.stalled {
                subscriber::stall(stream, finish).await
            } else {
                subscriber::read(stream, &plan, &shared, spec.channel, finish).await
            };
            if let Ending::ClosedEarly(_) = ending {
                shared.closed_early.fetch_add(1, Ordering::Relaxed);
            }
            (spec, Ok(ending))
        });
    }
    tasks
}

/// Waits for every subscriber task, up to [`CLOSE_TIMEOUT`], and returns their outcomes and
/// the number of tasks that were still running then and had to be aborted.
async fn collect(tasks: &mut JoinSet<Outcome>) -> (Vec<Outcome>, u64) {
    let mut outcomes = Vec::with_capacity(tasks.len());
    let wait = async {
        while let Some(joined) = tasks.join_next().await {
            if let Ok(outcome) = joined {
                outcomes.push(outcome);
            }
        }
    };
    if tokio::time::timeout(CLOSE_TIMEOUT, wait).await.is_ok() {
        return (outcomes, 0);
    }
    let stuck = tasks.len() as u64;
    eprintln!("loadgen worker: {stuck} subscribers did not close within {CLOSE_TIMEOUT:?}");
    tasks.abort_all();
    (outcomes, stuck)
}

fn build_report(
    plan: &WorkerPlan,
    shared: &Shared,
    outcomes: Vec<Outcome>,
    stuck: u64,
) -> WorkerReport {
    let mut report = WorkerReport {
        readers_per_channel: vec![0; plan.channels as usize],
        ..WorkerReport::default()
    };
    let mut stalled = StalledReport::default();
    if stuck > 0 {
        report
            .closed_early
            .insert("did not close at the end of the run".into(), stuck);
    }

    for (spec, outcome) in outcomes {
        match outcome {
            Err(reason) if spec.stalled => {
                *stalled.connect_failures.entry(reason).or_insert(0) += 1;
            }
            Err(reason) => *report.connect_failures.entry(reason).or_insert(0) += 1,
            Ok(Ending::Stalled {
                ended_by_server,
                bytes,
            }) => {
                stalled.established += 1;
                stalled.ended_by_server += u64::from(ended_by_server);
                stalled.bytes_waiting += bytes;
            }
            Ok(ending) => {
                report.established += 1;
                report.readers_per_channel[spec.channel as usize] += 1;
                if let Ending::ClosedEarly(reason) = ending {
                    *report.closed_early.entry(reason).or_insert(0) += 1;
                }
            }
        }
    }

    let stats = shared.lock();
    report.deliveries = shared.deliveries.load(Ordering::Relaxed);
    report.duplicates = stats.duplicates;
    report.foreign = stats.foreign;
    report.unparsed = stats.unparsed;
    report.named_events = stats.named_events;
    report.events_with_id = stats.events_with_id;
    report.latency_micros = stats
        .latency
        .iter_recorded()
        .map(|bucket| (bucket.value_iterated_to(), bucket.count_at_value()))
        .collect();
    report.first_delivery_nanos = stats.first_delivery_nanos;
    report.last_delivery_nanos = stats.last_delivery_nanos;
    report.stalled = stalled;
    report
}

async fn send(stdout: &mut tokio::io::Stdout, message: &WorkerMessage) -> Result<(), WorkerError> {
    // Serializing these plain structs cannot fail: every map key is a string.
    let mut line = serde_json::to_vec(message).expect("worker messages serialize");
    line.push(b'\n');
    stdout.write_all(&line).await.map_err(WorkerError::Write)?;
    stdout.flush().await.map_err(WorkerError::Write)
}
