//! Markdown tables comparing two servers over the reports of several runs: for each scenario
//! and figure, the median of each server's runs with their range, and the ratio of medians.

use std::fmt::Write;

use crate::report::Report;

/// A figure of a report, with its unit in the name.
struct Figure {
    name: &'static str,
    value: fn(&Report) -> Option<f64>,
    /// Digits after the decimal point.
    decimals: usize,
    /// Whether the ratio of the two servers' values means anything.
    compare: bool,
}

const fn figure(name: &'static str, decimals: usize, value: fn(&Report) -> Option<f64>) -> Figure {
    Figure {
        name,
        value,
        decimals,
        compare: true,
    }
}

/// Creates a figure shown for context, without a ratio.
const fn context(name: &'static str, decimals: usize, value: fn(&Report) -> Option<f64>) -> Figure {
    Figure {
        compare: false,
        ..figure(name, decimals, value)
    }
}

fn sum(map: &std::collections::BTreeMap<String, u64>) -> f64 {
    map.values().sum::<u64>() as f64
}

/// Figures shown for every scenario.
const CONNECTION_FIGURES: &[Figure] = &[
    figure("readers connected", 0, |r| {
        Some(r.connections.established as f64)
    }),
    figure("readers that failed to connect", 0, |r| {
        Some(sum(&r.connections.failed))
    }),
    figure("streams closed early", 0, |r| {
        Some(sum(&r.connections.closed_early))
    }),
    figure("streams closed before publishing", 0, |r| {
        Some(r.connections.closed_before_publishing as f64)
    }),
    figure("seconds to connect everyone", 1, |r| {
        Some(r.connections.ramp_secs)
    }),
];

/// Figures of a scenario without messages: memory of idle subscribers.
const IDLE_FIGURES: &[Figure] = &[
    figure("server RSS per connection (KiB)", 2, |r| {
        r.server_process.as_ref()?.rss_per_connection_kib
    }),
    figure("server RSS, all connected (MiB)", 1, |r| {
        Some(r.server_process.as_ref()?.idle.rss_kib as f64 / 1024.0)
    }),
    figure("server user CPU to connect (s)", 2, |r| {
        Some(r.server_process.as_ref()?.connect_cpu.user)
    }),
    figure("server system CPU to connect (s)", 2, |r| {
        Some(r.server_process.as_ref()?.connect_cpu.system)
    }),
];

/// Figures of a scenario with messages.
const DELIVERY_FIGURES: &[Figure] = &[
    figure("deliveries", 0, |r| Some(r.deliveries.delivered as f64)),
    figure("lost deliveries", 0, |r| Some(r.deliveries.lost as f64)),
    figure("duplicated deliveries", 0, |r| {
        Some(r.deliveries.duplicated as f64)
    }),
    figure("deliveries per second", 0, |r| {
        Some(r.deliveries.per_second)
    }),
    figure("latency p50 (ms)", 2, |r| {
        Some(r.deliveries.latency_ms?.p50)
    }),
    figure("latency p90 (ms)", 2, |r| {
        Some(r.deliveries.latency_ms?.p90)
    }),
    figure("latency p99 (ms)", 2, |r| {
        Some(r.deliveries.latency_ms?.p99)
    }),
    figure("latency max (ms)", 2, |r| {
        Some(r.deliveries.latency_ms?.max)
    }),
    figure("server user CPU per delivery (µs)", 2, |r| {
        r.server_process.as_ref()?.user_micros_per_delivery
    }),
    figure("server system CPU per delivery (µs)", 2, |r| {
        r.server_process.as_ref()?.system_micros_per_delivery
    }),
    figure("server CPU per delivery (µs)", 2, |r| {
        r.server_process.as_ref()?.total_micros_per_delivery
    }),
    figure("deliveries per server CPU second", 0, |r| {
        r.server_process.as_ref()?.deliveries_per_cpu_second
    }),
    figure("server RSS before publishing (MiB)", 1, |r| {
        Some(r.server_process.as_ref()?.idle.rss_kib as f64 / 1024.0)
    }),
    figure("server RSS peak while publishing (MiB)", 1, |r| {
        Some(r.server_process.as_ref()?.publish_max_rss_kib as f64 / 1024.0)
    }),
    figure("publishes per second", 0, |r| Some(r.publishing.per_second)),
    // Reports written before the figure was clamped at its source can hold small negative
    // values, which are rounding.
    context("other processes' CPU while publishing (s)", 2, |r| {
        Some(r.machine.publish_other_secs?.max(0.0))
    }),
];

/// Figures of a scenario with stalled readers.
const STALLED_FIGURES: &[Figure] = &[
    figure("server RSS growth while publishing (MiB)", 1, |r| {
        let server = r.server_process.as_ref()?;
        Some((server.publish_max_rss_kib as f64 - server.idle.rss_kib as f64) / 1024.0)
    }),
    figure("stalled readers ended by the server", 0, |r| {
        Some(r.stalled.ended_by_server as f64)
    }),
];

/// Renders one table per scenario, in the order scenarios first appear in `reports`.
pub fn render(reports: &[Report], numerator: &str, denominator: &str) -> String {
    let mut scenarios: Vec<&str> = Vec::new();
    for report in reports {
        if !scenarios.contains(&report.scenario.as_str()) {
            scenarios.push(&report.scenario);
        }
    }

    let mut out = String::new();
    for scenario in scenarios {
        let runs: Vec<&Report> = reports.iter().filter(|r| r.scenario == scenario).collect();
        render_scenario(&mut out, scenario, &runs, numerator, denominator);
    }
    render_load(&mut out, reports);
    out
}

/// Describes the load from other processes during the runs, which shares the machine's cores.
fn render_load(out: &mut String, reports: &[Report]) {
    let mut other: Vec<f64> = reports
        .iter()
        .filter_map(|r| r.machine.publish_other_secs)
        .collect();
    let mut load: Vec<f64> = reports
        .iter()
        .filter_map(|r| r.machine.load_before)
        .collect();
    other.sort_by(f64::total_cmp);
    load.sort_by(f64::total_cmp);
    if let (Some(low), Some(high)) = (other.first(), other.last()) {
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "Other load: processes other than the server and the load generator used {low:.2} to \
             {high:.2} CPU seconds while messages were delivered in a run (median {:.2}).",
            median(&other).unwrap_or(0.0),
        );
    }
    if let (Some(low), Some(high)) = (load.first(), load.last()) {
        let _ = writeln!(
            out,
            "The 1-minute load average at the start of a run was {low:.2} to {high:.2}."
        );
    }
}

fn render_scenario(
    out: &mut String,
    scenario: &str,
    runs: &[&Report],
    numerator: &str,
    denominator: &str,
) {
    let of = |server: &str| -> Vec<&Report> {
        runs.iter()
            .copied()
            .filter(|r| r.server == server)
            .collect()
    };
    let (left, right) = (of(numerator), of(denominator));
    let Some(first) = runs.first() else {
        return;
    };

    let s = &first.settings;
    let rate = if s.messages == 0 {
        String::new()
    } else if s.rate > 0.0 {
        format!(", {} messages at {}/s", s.messages, s.rate)
    } else {
        format!(
            ", {} messages as fast as {} publishers send",
            s.messages, s.publishers
        )
    };
    let stalled = if s.stalled > 0 {
        format!(" and {}", counted(s.stalled.into(), "stalled reader"))
    } else {
        String::new()
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "### {scenario}\n\n{}{stalled} on {}{rate}; {} of {numerator}, {} of {denominator}. \
         Each cell is the median of the runs, with their range when they differ.\n",
        counted(s.subscribers.into(), "reader"),
        counted(s.channels.into(), "channel"),
        counted(left.len() as u64, "run"),
        counted(right.len() as u64, "run"),
    );
    let _ = writeln!(
        out,
        "| figure | {numerator} | {denominator} | {numerator} / {denominator} |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|");

    let mut figures: Vec<&Figure> = CONNECTION_FIGURES.iter().collect();
    if s.messages == 0 {
        figures.extend(IDLE_FIGURES);
    } else {
        figures.extend(DELIVERY_FIGURES);
    }
    if s.stalled > 0 {
        figures.extend(STALLED_FIGURES);
    }
    for figure in figures {
        let left_values = values(&left, figure);
        let right_values = values(&right, figure);
        let ratio = match (median(&left_values), median(&right_values)) {
            (Some(l), Some(r)) if r != 0.0 && figure.compare => format!("{:.2}", l / r),
            _ => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {ratio} |",
            figure.name,
            cell(&left_values, figure.decimals),
            cell(&right_values, figure.decimals),
        );
    }

    let problems: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.problems
                .iter()
                .map(move |p| format!("{} run {}: {p}", r.server, r.run))
        })
        .collect();
    if !problems.is_empty() {
        let _ = writeln!(out, "\nProblems reported:\n");
        for problem in problems {
            let _ = writeln!(out, "- {problem}");
        }
    }
    let _ = writeln!(out);
}

/// Returns "1 channel" or "3 channels".
fn counted(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

fn values(runs: &[&Report], figure: &Figure) -> Vec<f64> {
    let mut values: Vec<f64> = runs.iter().filter_map(|r| (figure.value)(r)).collect();
    values.sort_by(f64::total_cmp);
    values
}

/// Returns the median of sorted values.
fn median(sorted: &[f64]) -> Option<f64> {
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[middle]),
        _ => Some((sorted[middle - 1] + sorted[middle]) / 2.0),
    }
}

fn cell(sorted: &[f64], decimals: usize) -> String {
    let Some(median) = median(sorted) else {
        return "–".into();
    };
    // `sorted` is non-empty here, since it has a median.
    let low = format!("{:.decimals$}", sorted[0]);
    let high = format!("{:.decimals$}", sorted[sorted.len() - 1]);
    let median = format!("{median:.decimals$}");
    if low == high {
        return median;
    }
    format!("{median} ({low}–{high})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_runs() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, 2.0, 9.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), Some(3.0));
    }

    #[test]
    fn cell_shows_range_of_runs() {
        assert_eq!(cell(&[1.0, 2.0, 3.5], 1), "2.0 (1.0–3.5)");
        assert_eq!(cell(&[2.0, 2.0], 0), "2");
        assert_eq!(cell(&[19.01, 19.04], 1), "19.0");
        assert_eq!(cell(&[], 2), "–");
    }
}
