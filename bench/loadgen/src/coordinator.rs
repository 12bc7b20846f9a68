//! The coordinating process of a run: starts the worker processes, publishes the messages,
//! reads the server's figures from /proc, and builds the report.
//!
//! Phases: connect (workers ramp up their subscribers), hold (optional idle time), publish
//! (messages at the planned rate, then a drain until every delivery arrived or none arrived
//! for `--drain-secs`), close. The server is sampled at each phase boundary and every
//! `--sample-ms` in between. Every wait is bounded by the run's deadline.

use std::collections::BTreeMap;
use std::io;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::clock;
use crate::limits;
use crate::plan::{self, PlanError, RunArgs, WorkerPlan};
use crate::procstat::{self, MachineCpu, ProcError, ProcSample};
use crate::protocol::{FINISH, StalledReport, WorkerMessage, WorkerReport};
use crate::publisher::{self, PublishOutcome};
use crate::report::{
    Connections, CpuSeconds, Deliveries, MachineFigures, Percentiles, Publishing, Report,
    ServerFigures,
};
use crate::subscriber::MAX_LATENCY_MICROS;

/// Extra time a worker's own deadline allows past the run's, so that the coordinator's
/// finish line normally arrives first.
const WORKER_GRACE: Duration = Duration::from_secs(30);

/// Maximum wait for the workers' reports after the finish line, and for them to exit.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
const EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Time for a progress line from every worker to arrive: workers send one every 200 ms.
const PROGRESS_CATCH_UP: Duration = Duration::from_millis(250);

/// Time between checks of the workers' progress while draining.
const DRAIN_POLL: Duration = Duration::from_millis(50);

/// Time the server gets to release closed connections before the last sample.
const AFTER_CLOSE_PAUSE: Duration = Duration::from_millis(500);

/// Error that ends a run without a report.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Plan(#[from] PlanError),

    #[error(transparent)]
    Limit(#[from] limits::LimitError),

    #[error("cannot read the server's figures: {0}")]
    Server(#[from] ProcError),

    #[error("cannot start a worker process: {0}")]
    SpawnWorker(io::Error),

    #[error("cannot send the plan to worker {index}: {error}")]
    SendPlan { index: u32, error: io::Error },

    #[error("worker {index} ended before it was ready: {reason}")]
    WorkerLost { index: u32, reason: String },

    #[error("{missing} of the workers were not ready before the run's deadline")]
    NotReady { missing: usize },
}

/// A line from a worker, or the end of its output.
enum FromWorker {
    Message(u32, WorkerMessage),
    Ended(u32, String),
}

/// A running worker process.
struct Worker {
    child: Child,
    stdin: Option<ChildStdin>,
    /// The worker's last progress line.
    progress: Arc<Progress>,
}

/// Counts from a worker's progress lines, stored by the task that reads its output.
#[derive(Default)]
struct Progress {
    deliveries: AtomicU64,
    closed_early: AtomicU64,
}

/// The workers' ready messages, summed.
#[derive(Default)]
struct Readiness {
    readers_per_channel: Vec<u64>,
    failed: BTreeMap<String, u64>,
}

/// Runs one scenario against one server and returns its report.
pub async fn run(args: RunArgs) -> Result<Report, RunError> {
    plan::validate(&args)?;
    limits::check_per_worker(args.per_worker)?;
    let deadline = Instant::now() + Duration::from_secs(args.max_secs);
    let run_id = new_run_id();
    let load_before = procstat::load_average();

    let before = args.server_pid.map(procstat::sample).transpose()?;
    let (stop_sampling, sampler) = start_sampler(&args, deadline);

    // Connect.
    let ramp_start = Instant::now();
    let (mut workers, mut from_workers) = spawn_workers(&args, run_id, deadline).await?;
    let readiness = wait_ready(&mut from_workers, workers.len(), deadline).await?;
    let ramp_secs = ramp_start.elapsed().as_secs_f64();
    eprintln!(
        "loadgen: {} readers connected in {ramp_secs:.1} s",
        readiness.readers_per_channel.iter().sum::<u64>()
    );

    // Hold.
    // Hold, for at least one progress interval so that the closed-early counts are current.
    let hold = Duration::from_secs_f64(args.hold_secs).max(PROGRESS_CATCH_UP);
    tokio::time::sleep_until(deadline.min(Instant::now() + hold)).await;
    let closed_before_publishing = workers
        .iter()
        .map(|w| w.progress.closed_early.load(Ordering::Relaxed))
        .sum();

    // Publish and drain.
    let idle = Phase::sample(&args, &workers);
    let published = if args.messages > 0 {
        publisher::publish_all(&args, run_id, deadline).await
    } else {
        publisher::PublishOutcome::nothing(args.channels)
    };
    let expected = expected_deliveries(
        &published.accepted_per_channel,
        &readiness.readers_per_channel,
    );
    drain(&workers, expected, &args, deadline).await;
    let delivered = Phase::sample(&args, &workers);

    // Close.
    let reports = finish(&mut workers, &mut from_workers).await;
    let _ = stop_sampling.send(true);
    tokio::time::sleep(AFTER_CLOSE_PAUSE).await;
    let after = args.server_pid.and_then(|pid| procstat::sample(pid).ok());
    let (series, sampler_error) = sampler
        .await
        .unwrap_or_else(|e| (Vec::new(), Some(e.to_string())));

    let mut report = assemble(Assembly {
        args,
        run_id,
        workers: workers.len() as u32,
        ramp_secs,
        closed_before_publishing,
        published,
        reports,
        before,
        idle,
        delivered,
        after,
        series,
    });
    report.machine.load_before = load_before;
    report.machine.load_after = procstat::load_average();
    if let Some(error) = sampler_error {
        report
            .problems
            .push(format!("sampling the server failed: {error}"));
    }
    Ok(report)
}

/// Returns an id for channel names and probes, made of the clock and the process id, so that
/// two runs on one machine do not share one.
fn new_run_id() -> u64 {
    let mixed = clock::now_nanos() ^ (u64::from(std::process::id()) << 40);
    // Keep 48 bits so channel names stay short.
    mixed & 0xffff_ffff_ffff
}

async fn spawn_workers(
    args: &RunArgs,
    run_id: u64,
    deadline: Instant,
) -> Result<(Vec<Worker>, mpsc::Receiver<FromWorker>), RunError> {
    let count = plan::worker_count(args);
    let program = std::env::current_exe().map_err(RunError::SpawnWorker)?;
    let (sender, receiver) = mpsc::channel(64);
    let mut workers = Vec::with_capacity(count as usize);

    for index in 0..count {
        let plan = WorkerPlan {
            target: args.url,
            run_id,
            channel_prefix: args.channel_prefix.clone(),
            index,
            workers: count,
            subscribers: args.subscribers,
            stalled: args.stalled,
            channels: args.channels,
            messages: args.messages,
            ramp_rate: args.ramp_rate / f64::from(count),
            max_handshakes: args.max_handshakes,
            source_addresses: args.source_addresses,
            connect_timeout: Duration::from_secs_f64(args.connect_timeout_secs),
            deadline: deadline.saturating_duration_since(Instant::now()) + WORKER_GRACE,
        };
        let mut child = Command::new(&program)
            .arg("worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(RunError::SpawnWorker)?;

        // Both are piped above, so the handles are present.
        let mut stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        // Plans hold only numbers and short strings, which always serialize.
        let mut line = serde_json::to_vec(&plan).expect("plans serialize");
        line.push(b'\n');
        stdin
            .write_all(&line)
            .await
            .map_err(|error| RunError::SendPlan { index, error })?;

        let progress = Arc::new(Progress::default());
        tokio::spawn(forward_lines(
            index,
            stdout,
            progress.clone(),
            sender.clone(),
        ));
        workers.push(Worker {
            child,
            stdin: Some(stdin),
            progress,
        });
    }
    Ok((workers, receiver))
}

/// Reads a worker's stdout: keeps its latest progress, forwards its other messages.
async fn forward_lines(
    index: u32,
    stdout: tokio::process::ChildStdout,
    progress: Arc<Progress>,
    sender: mpsc::Sender<FromWorker>,
) {
    let mut lines = BufReader::new(stdout).lines();
    let ending = loop {
        let line = match lines.next_line().await {
            Ok(Some(line)) => line,
            Ok(None) => break "its output ended".to_owned(),
            Err(error) => break format!("reading its output failed: {error}"),
        };
        match serde_json::from_str::<WorkerMessage>(&line) {
            Ok(WorkerMessage::Progress {
                deliveries,
                closed_early,
            }) => {
                progress.deliveries.store(deliveries, Ordering::Relaxed);
                progress.closed_early.store(closed_early, Ordering::Relaxed);
            }
            Ok(message) => {
                if sender
                    .send(FromWorker::Message(index, message))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(error) => break format!("it wrote an invalid line: {error}"),
        }
    };
    let _ = sender.send(FromWorker::Ended(index, ending)).await;
}

async fn wait_ready(
    from_workers: &mut mpsc::Receiver<FromWorker>,
    count: usize,
    deadline: Instant,
) -> Result<Readiness, RunError> {
    let mut readiness = Readiness::default();
    let mut ready = 0;
    while ready < count {
        let message = match tokio::time::timeout_at(deadline, from_workers.recv()).await {
            Ok(Some(message)) => message,
            Ok(None) | Err(_) => {
                return Err(RunError::NotReady {
                    missing: count - ready,
                });
            }
        };
        match message {
            FromWorker::Message(
                _,
                WorkerMessage::Ready {
                    readers_per_channel,
                    failed,
                    ..
                },
            ) => {
                add_counts(&mut readiness.readers_per_channel, &readers_per_channel);
                merge_reasons(&mut readiness.failed, failed);
                ready += 1;
            }
            FromWorker::Message(..) => {}
            FromWorker::Ended(index, reason) => return Err(RunError::WorkerLost { index, reason }),
        }
    }
    Ok(readiness)
}

/// Returns the sum over channels of accepted messages times readers.
fn expected_deliveries(accepted_per_channel: &[u64], readers_per_channel: &[u64]) -> u64 {
    accepted_per_channel
        .iter()
        .zip(readers_per_channel)
        .map(|(messages, readers)| messages * readers)
        .sum()
}

/// Waits until the workers have seen `expected` deliveries, or none arrived for
/// `--drain-secs`, or the deadline passed.
async fn drain(workers: &[Worker], expected: u64, args: &RunArgs, deadline: Instant) {
    let quiet_limit = Duration::from_secs_f64(args.drain_secs);
    let total = || {
        workers
            .iter()
            .map(|w| w.progress.deliveries.load(Ordering::Relaxed))
            .sum::<u64>()
    };
    let mut seen = total();
    let mut last_change = Instant::now();
    while seen < expected && last_change.elapsed() < quiet_limit && Instant::now() < deadline {
        tokio::time::sleep(DRAIN_POLL).await;
        let now_seen = total();
        if now_seen != seen {
            seen = now_seen;
            last_change = Instant::now();
        }
    }
}

/// Tells every worker to finish and collects their reports.
async fn finish(
    workers: &mut [Worker],
    from_workers: &mut mpsc::Receiver<FromWorker>,
) -> Vec<Result<WorkerReport, String>> {
    let mut reports: Vec<Option<Result<WorkerReport, String>>> = vec![None; workers.len()];
    for worker in workers.iter_mut() {
        if let Some(mut stdin) = worker.stdin.take() {
            // A worker that misses this line stops anyway when its stdin closes as the handle drops.
            let _ = stdin.write_all(format!("{FINISH}\n").as_bytes()).await;
            let _ = stdin.flush().await;
        }
    }

    let collect = async {
        while reports.iter().any(Option::is_none) {
            let Some(message) = from_workers.recv().await else {
                break;
            };
            match message {
                FromWorker::Message(index, WorkerMessage::Report(report)) => {
                    reports[index as usize] = Some(Ok(*report));
                }
                FromWorker::Message(..) => {}
                FromWorker::Ended(index, reason) => {
                    reports[index as usize].get_or_insert(Err(reason));
                }
            }
        }
    };
    let _ = tokio::time::timeout(REPORT_TIMEOUT, collect).await;

    for worker in workers.iter_mut() {
        if tokio::time::timeout(EXIT_TIMEOUT, worker.child.wait())
            .await
            .is_err()
        {
            // The child is this process's own; kill signals its PID only.
            let _ = worker.child.start_kill();
        }
    }
    reports
        .into_iter()
        .map(|report| report.unwrap_or_else(|| Err("no report before the timeout".into())))
        .collect()
}

/// Samples the server every `--sample-ms` until `stop` is set or the deadline passes. Returns
/// the samples and the error that ended sampling early, if one did.
fn start_sampler(args: &RunArgs, deadline: Instant) -> (watch::Sender<bool>, JoinHandle<Series>) {
    let (stop, mut stopped) = watch::channel(false);
    let pid = args.server_pid;
    let interval = Duration::from_millis(args.sample_ms.max(10));
    let task = tokio::spawn(async move {
        let mut series = Vec::new();
        let Some(pid) = pid else {
            return (series, None);
        };
        let mut ticks = tokio::time::interval(interval);
        loop {
            tokio::select! {
                _ = ticks.tick() => {}
                _ = stopped.wait_for(|stop| *stop) => return (series, None),
                _ = tokio::time::sleep_until(deadline) => return (series, None),
            }
            match procstat::sample(pid) {
                Ok(sample) => series.push(sample),
                Err(error) => return (series, Some(error.to_string())),
            }
        }
    });
    (stop, task)
}

/// The server samples of a run, and the error that ended sampling early, if one did.
type Series = (Vec<ProcSample>, Option<String>);

/// Readings taken at a phase boundary.
struct Phase {
    server: Option<ProcSample>,
    /// CPU of this process and of every worker, summed.
    generator: Option<CpuSeconds>,
    machine: Option<MachineCpu>,
}

impl Phase {
    fn sample(args: &RunArgs, workers: &[Worker]) -> Self {
        let mut pids = vec![std::process::id()];
        pids.extend(workers.iter().filter_map(|w| w.child.id()));
        let generator = pids.iter().map(|pid| procstat::sample(*pid).ok()).try_fold(
            CpuSeconds::default(),
            |sum, sample| {
                let sample = sample?;
                Some(CpuSeconds {
                    user: sum.user + sample.user_secs,
                    system: sum.system + sample.system_secs,
                })
            },
        );
        Self {
            server: args.server_pid.and_then(|pid| procstat::sample(pid).ok()),
            generator,
            machine: procstat::machine_cpu().ok(),
        }
    }
}

/// The parts a report is built from.
struct Assembly {
    args: RunArgs,
    run_id: u64,
    workers: u32,
    ramp_secs: f64,
    closed_before_publishing: u64,
    published: PublishOutcome,
    reports: Vec<Result<WorkerReport, String>>,
    before: Option<ProcSample>,
    idle: Phase,
    delivered: Phase,
    after: Option<ProcSample>,
    series: Vec<ProcSample>,
}

fn assemble(parts: Assembly) -> Report {
    let Assembly {
        args, published, ..
    } = &parts;
    let mut problems = Vec::new();

    // Merge the workers' reports.
    let mut readers_per_channel = vec![0; args.channels as usize];
    let mut connections = Connections {
        attempted: u64::from(args.subscribers),
        ramp_secs: parts.ramp_secs,
        closed_before_publishing: parts.closed_before_publishing,
        ..Connections::default()
    };
    let mut deliveries = Deliveries::default();
    let mut stalled = StalledReport::default();
    // 1 µs to MAX_LATENCY_MICROS at 3 significant digits are valid bounds.
    let mut latency = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_MICROS, 3)
        .expect("valid histogram bounds");
    let mut last_delivery: Option<u64> = None;
    for (index, report) in parts.reports.iter().enumerate() {
        let report = match report {
            Ok(report) => report,
            Err(reason) => {
                problems.push(format!("worker {index} sent no report: {reason}"));
                continue;
            }
        };
        connections.established += report.established;
        merge_reasons(&mut connections.failed, report.connect_failures.clone());
        merge_reasons(&mut connections.closed_early, report.closed_early.clone());
        add_counts(&mut readers_per_channel, &report.readers_per_channel);
        deliveries.delivered += report.deliveries;
        deliveries.duplicated += report.duplicates;
        deliveries.foreign += report.foreign;
        deliveries.unparsed += report.unparsed;
        deliveries.named_events += report.named_events;
        deliveries.events_with_id += report.events_with_id;
        for &(micros, count) in &report.latency_micros {
            latency.saturating_record_n(micros.clamp(1, MAX_LATENCY_MICROS), count);
        }
        last_delivery = last_delivery.max(report.last_delivery_nanos);
        stalled.established += report.stalled.established;
        stalled.ended_by_server += report.stalled.ended_by_server;
        stalled.bytes_waiting += report.stalled.bytes_waiting;
        merge_reasons(
            &mut stalled.connect_failures,
            report.stalled.connect_failures.clone(),
        );
    }

    deliveries.expected =
        expected_deliveries(&published.accepted_per_channel, &readers_per_channel);
    deliveries.lost = deliveries.expected.saturating_sub(deliveries.delivered);
    deliveries.latency_ms = Percentiles::from_micros(&latency);
    if let (Some(first_sent), Some(last)) = (published.first_sent_nanos, last_delivery) {
        let secs = clock::since(first_sent, last).as_secs_f64();
        if secs > 0.0 {
            deliveries.per_second = deliveries.delivered as f64 / secs;
        }
    }

    let publishing = publishing_figures(published);
    list_problems(
        &mut problems,
        &connections,
        &publishing,
        &deliveries,
        &stalled,
    );

    // Streams the server ended during the ramp take no memory at the idle sample.
    let open_at_idle = (connections.established + stalled.established)
        .saturating_sub(connections.closed_before_publishing);
    let server_process = server_figures(&parts, open_at_idle, deliveries.delivered);
    let generator_cpu = match (parts.idle.generator, parts.delivered.generator) {
        (Some(start), Some(end)) => Some(CpuSeconds {
            user: end.user - start.user,
            system: end.system - start.system,
        }),
        _ => None,
    };
    let machine = machine_figures(&parts, server_process.as_ref(), generator_cpu);

    Report {
        scenario: args.scenario.clone(),
        server: args.server_name.clone(),
        run: args.run,
        run_id: parts.run_id,
        settings: args.clone(),
        workers: parts.workers,
        connections,
        publishing,
        deliveries,
        stalled,
        server_process,
        generator_cpu,
        machine,
        problems,
    }
}

fn publishing_figures(published: &PublishOutcome) -> Publishing {
    let secs = match (published.first_sent_nanos, published.last_done_nanos) {
        (Some(first), Some(last)) => clock::since(first, last).as_secs_f64(),
        _ => 0.0,
    };
    Publishing {
        attempted: published.attempted,
        accepted: published.accepted,
        failed: published.failed.clone(),
        secs,
        per_second: if secs > 0.0 {
            published.accepted as f64 / secs
        } else {
            0.0
        },
        request_latency_ms: Percentiles::from_micros(&published.request_latency),
    }
}

fn list_problems(
    problems: &mut Vec<String>,
    connections: &Connections,
    publishing: &Publishing,
    deliveries: &Deliveries,
    stalled: &StalledReport,
) {
    let failed: u64 = connections.failed.values().sum();
    if failed > 0 {
        problems.push(format!(
            "{failed} readers failed to connect: {:?}",
            connections.failed
        ));
    }
    let closed: u64 = connections.closed_early.values().sum();
    if closed > 0 {
        problems.push(format!(
            "{closed} readers lost their stream early: {:?}",
            connections.closed_early
        ));
    }
    let stalled_failed: u64 = stalled.connect_failures.values().sum();
    if stalled_failed > 0 {
        problems.push(format!(
            "{stalled_failed} stalled readers failed to connect: {:?}",
            stalled.connect_failures
        ));
    }
    if publishing.accepted < publishing.attempted {
        problems.push(format!(
            "{} of {} publishes failed: {:?}",
            publishing.attempted - publishing.accepted,
            publishing.attempted,
            publishing.failed
        ));
    }
    for (count, what) in [
        (deliveries.lost, "deliveries lost"),
        (deliveries.duplicated, "deliveries duplicated"),
        (deliveries.foreign, "foreign or unexpected probes received"),
        (
            deliveries.unparsed,
            "message events without a probe received",
        ),
    ] {
        if count > 0 {
            problems.push(format!("{count} {what}"));
        }
    }
}

fn server_figures(parts: &Assembly, open_at_idle: u64, delivered: u64) -> Option<ServerFigures> {
    let pid = parts.args.server_pid?;
    let before = parts.before?;
    let idle = parts.idle.server?;
    let published = parts.delivered.server?;

    let connect_cpu = CpuSeconds::between(&before, &idle);
    let publish_cpu = CpuSeconds::between(&idle, &published);
    let per_delivery = |secs: f64| (delivered > 0).then(|| secs * 1e6 / delivered as f64);
    let rss_per_connection_kib = (open_at_idle > 0)
        .then(|| (idle.rss_kib as f64 - before.rss_kib as f64) / open_at_idle as f64);
    let publish_max_rss_kib = parts
        .series
        .iter()
        .filter(|s| s.at_nanos >= idle.at_nanos && s.at_nanos <= published.at_nanos)
        .map(|s| s.rss_kib)
        .chain([idle.rss_kib, published.rss_kib])
        .max()
        .unwrap_or(published.rss_kib);

    Some(ServerFigures {
        pid,
        before,
        idle,
        published,
        after: parts.after,
        series: parts.series.clone(),
        rss_per_connection_kib,
        connect_cpu,
        publish_cpu,
        user_micros_per_delivery: per_delivery(publish_cpu.user),
        system_micros_per_delivery: per_delivery(publish_cpu.system),
        total_micros_per_delivery: per_delivery(publish_cpu.total()),
        deliveries_per_cpu_second: (publish_cpu.total() > 0.0)
            .then(|| delivered as f64 / publish_cpu.total()),
        publish_max_rss_kib,
    })
}

fn machine_figures(
    parts: &Assembly,
    server: Option<&ServerFigures>,
    generator: Option<CpuSeconds>,
) -> MachineFigures {
    let busy = match (parts.idle.machine, parts.delivered.machine) {
        (Some(start), Some(end)) => Some(MachineFigures::busy_between(&start, &end)),
        _ => None,
    };
    let other = match (busy, server, generator) {
        // The machine's and the processes' counters tick at different times, so a small
        // negative difference is rounding: it is recorded as zero.
        (Some(busy), Some(server), Some(generator)) => {
            Some((busy - server.publish_cpu.total() - generator.total()).max(0.0))
        }
        _ => None,
    };
    MachineFigures {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        publish_busy_secs: busy,
        publish_other_secs: other,
        load_before: None,
        load_after: None,
    }
}

fn merge_reasons(total: &mut BTreeMap<String, u64>, part: BTreeMap<String, u64>) {
    for (reason, count) in part {
        *total.entry(reason).or_insert(0) += count;
    }
}

fn add_counts(total: &mut Vec<u64>, part: &[u64]) {
    if total.len() < part.len() {
        total.resize(part.len(), 0);
    }
    for (sum, count) in total.iter_mut().zip(part) {
        *sum += count;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_counts_readers_per_message() {
        assert_eq!(expected_deliveries(&[3, 3, 2], &[10, 0, 5]), 40);
        assert_eq!(expected_deliveries(&[], &[]), 0);
    }

    #[test]
    fn counts_add_up_across_workers() {
        let mut total = Vec::new();
        add_counts(&mut total, &[1, 2]);
        add_counts(&mut total, &[3, 4, 5]);
        assert_eq!(total, [4, 6, 5]);
    }
}
