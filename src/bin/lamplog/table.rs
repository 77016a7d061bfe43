//! Output of commands that list things: one JSON object per line with
//! `--json`, else an aligned table.

use std::io::{self, Write};

use serde::Serialize;

use crate::failure::Failure;

/// Print `rows`: with `json`, each as one JSON object per line (its fields
/// in declaration order); else a table of `columns`, a header line first.
pub fn print<T: Serialize>(rows: &[T], columns: &[&str], json: bool) -> Result<(), Failure> {
    let mut out = io::BufWriter::new(io::stdout().lock());
    if json {
        for row in rows {
            serde_json::to_writer(&mut out, row).map_err(io::Error::from)?;
            out.write_all(b"\n")?;
        }
        out.flush()?;
        return Ok(());
    }
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| {
            let value = serde_json::to_value(row).unwrap_or_default();
            columns.iter().map(|c| cell(&value[*c])).collect()
        })
        .collect();
    let widths: Vec<usize> = columns
        .iter()
        .enumerate()
        .map(|(i, c)| cells.iter().map(|r| r[i].len()).fold(c.len(), usize::max))
        .collect();
    let line = |out: &mut dyn Write, values: &mut dyn Iterator<Item = &str>| -> io::Result<()> {
        let padded: Vec<String> = values
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        writeln!(out, "{}", padded.join("  ").trim_end())
    };
    line(&mut out, &mut columns.iter().copied())?;
    for row in &cells {
        line(&mut out, &mut row.iter().map(String::as_str))?;
    }
    out.flush()?;
    Ok(())
}

fn cell(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Null => "-".into(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
