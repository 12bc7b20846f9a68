//! The `loadgen` binary: parses flags and runs a benchmark run, a worker, or a table.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dropthat_loadgen::plan::RunArgs;
use dropthat_loadgen::report::Report;
use dropthat_loadgen::{coordinator, limits, table, worker};

#[derive(Parser)]
#[command(
    name = "loadgen",
    version,
    about = "Load generator for relay benchmarks: event-stream subscribers and publishers on loopback"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs one scenario against one server and prints a summary.
    Run(Box<RunArgs>),

    /// Prints markdown tables comparing two servers from report files.
    Table {
        /// Report files written by `run --json`.
        #[arg(required = true)]
        reports: Vec<PathBuf>,

        /// Server whose figures are the numerator of each ratio.
        #[arg(long, default_value = "dropthat")]
        numerator: String,

        /// Server whose figures are the denominator of each ratio.
        #[arg(long, default_value = "nchan")]
        denominator: String,
    },

    /// Prints a TCP port on 127.0.0.1 that was free a moment ago.
    FreePort,

    /// Runs as a worker of `run`, reading its plan from stdin.
    #[command(hide = true)]
    Worker,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Run(args) => run(*args),
        Command::Table {
            reports,
            numerator,
            denominator,
        } => print_table(&reports, &numerator, &denominator),
        Command::FreePort => free_port(),
        Command::Worker => run_worker(),
    }
}

/// Builds the single-threaded runtime every mode runs on: parallelism comes from worker
/// processes, and the machine's cores are shared with the server under test.
fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn run(args: RunArgs) -> ExitCode {
    let check = args.check;
    let json = args.json.clone();
    let report = match runtime().map(|rt| rt.block_on(coordinator::run(args))) {
        Ok(Ok(report)) => report,
        Ok(Err(error)) => return fail(&error.to_string()),
        Err(error) => return fail(&format!("cannot start the async runtime: {error}")),
    };

    print!("{}", report.summary());
    if let Some(path) = json {
        // Reports hold numbers, strings and maps with string keys, which always serialize.
        let text = serde_json::to_string_pretty(&report).expect("reports serialize");
        if let Err(error) = std::fs::write(&path, text + "\n") {
            return fail(&format!("cannot write {}: {error}", path.display()));
        }
    }
    if check && !report.problems.is_empty() {
        return fail("the run had problems (listed above), and --check was given");
    }
    ExitCode::SUCCESS
}

fn run_worker() -> ExitCode {
    limits::raise_open_files();
    match runtime().map(|rt| rt.block_on(worker::run())) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(error)) => fail(&format!("worker: {error}")),
        Err(error) => fail(&format!("worker: cannot start the async runtime: {error}")),
    }
}

fn print_table(paths: &[PathBuf], numerator: &str, denominator: &str) -> ExitCode {
    let mut reports = Vec::with_capacity(paths.len());
    for path in paths {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) => return fail(&format!("cannot read {}: {error}", path.display())),
        };
        match serde_json::from_str::<Report>(&text) {
            Ok(report) => reports.push(report),
            Err(error) => return fail(&format!("{} is not a report: {error}", path.display())),
        }
    }
    print!("{}", table::render(&reports, numerator, denominator));
    ExitCode::SUCCESS
}

fn free_port() -> ExitCode {
    match TcpListener::bind("127.0.0.1:0").and_then(|listener| listener.local_addr()) {
        Ok(addr) => {
            println!("{}", addr.port());
            ExitCode::SUCCESS
        }
        Err(error) => fail(&format!("cannot bind a port on 127.0.0.1: {error}")),
    }
}

fn fail(message: &str) -> ExitCode {
    eprintln!("loadgen: {message}");
    ExitCode::FAILURE
}
