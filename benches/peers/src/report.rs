//! What a run measured, summed up per workload and system: medians and
//! ranges over the rounds, and how far ahead of each system lamplog is.

use std::fmt::Write as _;

use serde::Serialize;

/// A system's figure in one round of one workload.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub workload: String,
    pub system: String,
    pub round: usize,
    /// The workload's figure ([`Workload::unit`]).
    pub value: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// Payload megabytes per second, for replays.
    pub mb_s: Option<f64>,
}

/// A workload's table.
#[derive(Debug, Clone)]
pub struct Workload {
    pub key: String,
    pub title: String,
    pub unit: &'static str,
    pub higher_is_better: bool,
    /// What the table shows, in a sentence or two.
    pub note: String,
    /// Writers, for the plots of durable appends.
    pub writers: Option<usize>,
}

/// Systems that are references, not logs: no lead is computed over them.
pub const REFERENCES: [&str; 2] = ["fdatasync-loop", "lockstep-ceiling"];

/// A system's figures over the rounds of a workload.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub workload: String,
    pub system: String,
    pub rounds: usize,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub mb_s: Option<f64>,
    /// How many times better lamplog's median is than this system's (above
    /// 1: lamplog ahead), whichever way the unit points.
    pub lamplog_ahead_by: Option<f64>,
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

fn median_of(samples: &[&Sample], field: impl Fn(&Sample) -> Option<f64>) -> Option<f64> {
    let mut values: Vec<f64> = samples.iter().filter_map(|s| field(s)).collect();
    (!values.is_empty()).then(|| median(&mut values))
}

/// The summaries of `workload`, in the order its systems first appear.
pub fn summarize(workload: &Workload, samples: &[Sample]) -> Vec<Summary> {
    let mine: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.workload == workload.key)
        .collect();
    let mut systems: Vec<&str> = Vec::new();
    for s in &mine {
        if !systems.contains(&s.system.as_str()) {
            systems.push(&s.system);
        }
    }
    let mut summaries: Vec<Summary> = systems
        .iter()
        .map(|system| {
            let of: Vec<&Sample> = mine
                .iter()
                .copied()
                .filter(|s| s.system == *system)
                .collect();
            let mut values: Vec<f64> = of.iter().map(|s| s.value).collect();
            Summary {
                workload: workload.key.clone(),
                system: (*system).to_owned(),
                rounds: of.len(),
                median: median(&mut values),
                min: values.first().copied().unwrap_or(f64::NAN),
                max: values.last().copied().unwrap_or(f64::NAN),
                p50_us: median_of(&of, |s| s.p50_us),
                p99_us: median_of(&of, |s| s.p99_us),
                mb_s: median_of(&of, |s| s.mb_s),
                lamplog_ahead_by: None,
            }
        })
        .collect();
    if let Some(ours) = summaries
        .iter()
        .find(|s| s.system == "lamplog")
        .map(|s| s.median)
    {
        for s in &mut summaries {
            if s.system != "lamplog" && !REFERENCES.contains(&s.system.as_str()) {
                s.lamplog_ahead_by = Some(if workload.higher_is_better {
                    ours / s.median
                } else {
                    s.median / ours
                });
            }
        }
    }
    summaries
}

fn figure(value: f64) -> String {
    if !value.is_finite() {
        return "–".into();
    }
    if value >= 100.0 {
        // Thousands separated, as the docs quote them.
        let digits = format!("{:.0}", value);
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else if value >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.4}")
    }
}

fn latency(us: Option<f64>) -> String {
    match us {
        None => "–".into(),
        Some(us) if us >= 10_000.0 => format!("{:.1} ms", us / 1000.0),
        Some(us) if us >= 1000.0 => format!("{:.2} ms", us / 1000.0),
        Some(us) => format!("{us:.0} µs"),
    }
}

/// A markdown table of `summaries`.
pub fn table(workload: &Workload, summaries: &[Summary]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "### {}\n\n{}\n", workload.title, workload.note);
    let with_latency = summaries.iter().any(|s| s.p99_us.is_some());
    let with_mb = summaries.iter().any(|s| s.mb_s.is_some());
    let mut header = format!("| system | {} (median) | range |", workload.unit);
    if with_mb {
        header.push_str(" MB/s of payload |");
    }
    if with_latency {
        header.push_str(" p50 | p99 |");
    }
    header.push_str(" lamplog ahead by |");
    let columns = header.matches('|').count() - 1;
    let _ = writeln!(out, "{header}\n|{}", "---|".repeat(columns));
    for s in summaries {
        let name = if s.system == "lamplog" {
            "**lamplog**".to_owned()
        } else {
            s.system.clone()
        };
        let _ = write!(
            out,
            "| {name} | {} | {}–{} |",
            figure(s.median),
            figure(s.min),
            figure(s.max)
        );
        if with_mb {
            let _ = write!(out, " {} |", s.mb_s.map_or("–".into(), figure));
        }
        if with_latency {
            let _ = write!(out, " {} | {} |", latency(s.p50_us), latency(s.p99_us));
        }
        let lead = match s.lamplog_ahead_by {
            Some(x) => format!("{x:.2}x"),
            None => "–".into(),
        };
        let _ = writeln!(out, " {lead} |");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(system: &str, value: f64) -> Sample {
        Sample {
            workload: "w".into(),
            system: system.into(),
            round: 0,
            value,
            p50_us: None,
            p99_us: None,
            mb_s: None,
        }
    }

    fn workload(higher_is_better: bool) -> Workload {
        Workload {
            key: "w".into(),
            title: "W".into(),
            unit: "records/s",
            higher_is_better,
            note: String::new(),
            writers: None,
        }
    }

    #[test]
    fn the_lead_points_the_units_way() {
        let samples = [
            sample("lamplog", 200.0),
            sample("lamplog", 100.0),
            sample("lamplog", 300.0),
            sample("okaywal", 100.0),
            sample("fdatasync-loop", 50.0),
        ];
        let faster = summarize(&workload(true), &samples);
        assert_eq!(faster[0].median, 200.0);
        assert_eq!((faster[0].min, faster[0].max), (100.0, 300.0));
        assert_eq!(faster[1].lamplog_ahead_by, Some(2.0));
        assert_eq!(faster[2].lamplog_ahead_by, None, "no lead over a reference");
        let slower = summarize(&workload(false), &samples);
        assert_eq!(slower[1].lamplog_ahead_by, Some(0.5));
    }

    #[test]
    fn figures_read_as_the_docs_quote_them() {
        assert_eq!(figure(1_234_567.4), "1,234,567");
        assert_eq!(figure(512.0), "512");
        assert_eq!(figure(1.234), "1.23");
        assert_eq!(latency(Some(15_300.0)), "15.3 ms");
        assert_eq!(latency(Some(1_530.0)), "1.53 ms");
        assert_eq!(median(&mut [3.0, 1.0, 2.0, 10.0]), 2.5);
    }
}
