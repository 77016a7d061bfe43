//! SVG plots of durable appends against writers: throughput, and p99
//! latency, one line per system, both axes logarithmic.

use std::path::Path;

use plotters::prelude::*;

use crate::report::{Summary, REFERENCES};

/// Points of one system: (writers, value).
pub struct Line {
    pub system: String,
    pub points: Vec<(usize, f64)>,
}

/// The lines of `field` over durable summaries tagged with their writers.
pub fn lines(durable: &[(usize, Summary)], field: impl Fn(&Summary) -> Option<f64>) -> Vec<Line> {
    let mut lines: Vec<Line> = Vec::new();
    for (writers, s) in durable {
        let Some(value) = field(s).filter(|v| v.is_finite() && *v > 0.0) else {
            continue;
        };
        match lines.iter_mut().find(|l| l.system == s.system) {
            Some(line) => line.points.push((*writers, value)),
            None => lines.push(Line {
                system: s.system.clone(),
                points: vec![(*writers, value)],
            }),
        }
    }
    lines
}

/// Each system's colour, the same in every plot.
fn colour(system: &str) -> RGBColor {
    match system {
        "lamplog" => RGBColor(200, 30, 30),
        "raft-engine" => RGBColor(31, 119, 180),
        "okaywal" => RGBColor(255, 127, 14),
        "fjall" => RGBColor(148, 103, 189),
        "sqlite" => RGBColor(23, 160, 90),
        "jsonl" => RGBColor(227, 119, 194),
        "lockstep-ceiling" => RGBColor(70, 70, 70),
        _ => RGBColor(160, 160, 160),
    }
}

/// Draws `lines` into `path` with a log-log chart.
pub fn draw(path: &Path, caption: &str, y_desc: &str, lines: &[Line]) -> Result<(), String> {
    let points = lines.iter().flat_map(|l| &l.points);
    let x_max = points.clone().map(|p| p.0).max().unwrap_or(1).max(2) as f64;
    let y_min = points.clone().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let y_max = points.map(|p| p.1).fold(0.0, f64::max);
    if !(y_min.is_finite() && y_max > 0.0) {
        return Err(format!("no points to plot in {}", path.display()));
    }
    let root = SVGBackend::new(path, (900, 560)).into_drawing_area();
    let error = |e: DrawingAreaErrorKind<_>| format!("plotting {}: {e}", path.display());
    root.fill(&WHITE).map_err(error)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(44)
        .y_label_area_size(80)
        .build_cartesian_2d(
            (0.8..x_max * 1.25).log_scale(),
            (y_min / 1.5..y_max * 1.5).log_scale(),
        )
        .map_err(error)?;
    chart
        .configure_mesh()
        .x_desc("writers (threads, each waiting for its append to be durable)")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| {
            if *y >= 1000.0 {
                format!("{:.0}k", y / 1000.0)
            } else {
                format!("{y:.1}")
            }
        })
        .draw()
        .map_err(error)?;
    for line in lines {
        let colour = colour(&line.system);
        let width = if line.system == "lamplog" { 3 } else { 2 };
        let style = colour.stroke_width(width);
        let points: Vec<(f64, f64)> = line.points.iter().map(|&(x, y)| (x as f64, y)).collect();
        // The references (the fdatasync loop, the lockstep ceiling) are
        // dashed: they are limits, not logs.
        let reference = REFERENCES.contains(&line.system.as_str());
        let series = if reference {
            chart.draw_series(DashedLineSeries::new(points.clone(), 6, 4, style))
        } else {
            chart.draw_series(LineSeries::new(points.clone(), style))
        };
        series
            .map_err(error)?
            .label(line.system.as_str())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], style));
        if !reference {
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 3, colour.filled())),
                )
                .map_err(error)?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(error)?;
    root.present().map_err(error)?;
    Ok(())
}
