//! CPU time and memory of a process, read from `/proc/<pid>/stat` and `/proc/<pid>/status`.

use std::fs;
use std::io;

use serde::{Deserialize, Serialize};

/// One reading of a process's resource use.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ProcSample {
    /// CLOCK_MONOTONIC nanoseconds when the sample was taken.
    pub at_nanos: u64,
    /// CPU seconds spent in user mode (`utime`, field 14 of `stat`).
    pub user_secs: f64,
    /// CPU seconds spent in the kernel on the process's behalf (`stime`, field 15).
    pub system_secs: f64,
    /// Resident set size in KiB (`VmRSS` of `status`).
    pub rss_kib: u64,
    /// Peak resident set size in KiB (`VmHWM` of `status`).
    pub peak_rss_kib: u64,
}

/// Error from reading a file under /proc.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: io::Error },

    #[error("{path} has an unexpected format: {detail}")]
    Format { path: String, detail: &'static str },
}

fn read_proc(path: String) -> Result<String, ProcError> {
    fs::read_to_string(&path).map_err(|source| ProcError::Read { path, source })
}

/// Reads the current CPU times and memory of process `pid`.
pub fn sample(pid: u32) -> Result<ProcSample, ProcError> {
    let at_nanos = crate::clock::now_nanos();
    let stat_path = format!("/proc/{pid}/stat");
    let (user_ticks, system_ticks) =
        parse_stat(&read_proc(stat_path.clone())?).map_err(|detail| ProcError::Format {
            path: stat_path,
            detail,
        })?;
    let status_path = format!("/proc/{pid}/status");
    let status = read_proc(status_path.clone())?;
    let rss_kib = parse_status_kib(&status, "VmRSS:");
    let peak_rss_kib = parse_status_kib(&status, "VmHWM:");
    let (Some(rss_kib), Some(peak_rss_kib)) = (rss_kib, peak_rss_kib) else {
        return Err(ProcError::Format {
            path: status_path,
            detail: "no VmRSS or VmHWM line",
        });
    };

    let ticks_per_second = rustix::param::clock_ticks_per_second() as f64;
    Ok(ProcSample {
        at_nanos,
        user_secs: user_ticks as f64 / ticks_per_second,
        system_secs: system_ticks as f64 / ticks_per_second,
        rss_kib,
        peak_rss_kib,
    })
}

/// CPU time of the whole machine since boot, from the first line of `/proc/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MachineCpu {
    /// Seconds all cores spent neither idle nor waiting for I/O.
    pub busy_secs: f64,
    /// Seconds all cores existed: busy, idle and waiting.
    pub total_secs: f64,
}

/// Reads the machine's CPU time.
pub fn machine_cpu() -> Result<MachineCpu, ProcError> {
    let path = "/proc/stat".to_owned();
    let text = read_proc(path.clone())?;
    let (busy, total) = parse_machine_stat(&text).ok_or(ProcError::Format {
        path,
        detail: "no cpu line with numbers",
    })?;
    let ticks_per_second = rustix::param::clock_ticks_per_second() as f64;
    Ok(MachineCpu {
        busy_secs: busy as f64 / ticks_per_second,
        total_secs: total as f64 / ticks_per_second,
    })
}

/// Returns busy and total ticks from `/proc/stat`. Its `cpu` line lists user, nice, system,
/// idle, iowait, irq, softirq, steal, guest and guest_nice. The guest times are already counted
/// in user and nice, so the total leaves them out.
fn parse_machine_stat(text: &str) -> Option<(u64, u64)> {
    let line = text.lines().find(|line| line.starts_with("cpu "))?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    let total: u64 = ticks.iter().sum();
    let idle = ticks.get(3)? + ticks.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// Returns the 1-minute load average from `/proc/loadavg`, if it can be read.
pub fn load_average() -> Option<f64> {
    let text = fs::read_to_string("/proc/loadavg").ok()?;
    text.split_whitespace().next()?.parse().ok()
}

/// Returns `utime` and `stime` in clock ticks from the text of `/proc/<pid>/stat`.
fn parse_stat(text: &str) -> Result<(u64, u64), &'static str> {
    // The command name (field 2) is in parentheses and may itself contain spaces and
    // parentheses, so the fields are counted from the last closing parenthesis.
    let after_name = text
        .rfind(')')
        .map(|at| &text[at + 1..])
        .ok_or("no closing parenthesis after the command name")?;
    // The first field after the name is field 3 (the state), so field N is at index N - 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let number = |n: usize| -> Result<u64, &'static str> {
        fields
            .get(n - 3)
            .ok_or("too few fields")?
            .parse()
            .map_err(|_| "utime or stime is not a number")
    };
    Ok((number(14)?, number(15)?))
}

fn parse_status_kib(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_odd_name() {
        let text = "1234 (a) b (c) S 1 1234 1234 0 -1 4194560 300 0 0 0 517 83 0 0 20 0 1 0 \
                    100 12345678 900 18446744073709551615\n";
        assert_eq!(parse_stat(text), Ok((517, 83)));
    }

    #[test]
    fn stat_rejects_truncated_text() {
        assert!(parse_stat("1234 (x) S 1 2 3").is_err());
        assert!(parse_stat("no name here").is_err());
    }

    #[test]
    fn status_lines_give_kib() {
        let text = "Name:\tnginx\nVmHWM:\t   10240 kB\nVmRSS:\t    8192 kB\n";
        assert_eq!(parse_status_kib(text, "VmRSS:"), Some(8192));
        assert_eq!(parse_status_kib(text, "VmHWM:"), Some(10240));
        assert_eq!(parse_status_kib(text, "VmSwap:"), None);
    }

    #[test]
    fn machine_stat_splits_busy_and_idle() {
        let text = "cpu  100 5 50 1000 20 1 2 3 7 0\ncpu0 50 2 25 500 10 0 1 1 3 0\n";
        assert_eq!(parse_machine_stat(text), Some((161, 1181)));
        assert_eq!(parse_machine_stat("intr 1 2 3\n"), None);
    }

    #[test]
    fn sample_reads_own_process() {
        let own = sample(std::process::id()).unwrap();
        assert!(own.rss_kib > 0);
        assert!(own.peak_rss_kib >= own.rss_kib);
    }
}
