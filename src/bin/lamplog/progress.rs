//! Progress bars on stderr for commands that can take over a second, drawn
//! only when stderr is a terminal (never into a pipe or a log file).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A counter of records for work whose total is unknown in advance (a
/// query, a read); hidden unless stderr is a terminal.
pub fn counter(what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg}: {pos} records {per_sec}")
            .expect("a valid template"),
    );
    bar.set_message(what.to_string());
    bar
}

/// A bar counting `total` steps of `what`; hidden unless stderr is a terminal.
pub fn bar(total: u64, what: &str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{msg:>16} [{bar:30}] {pos}/{len} {per_sec}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
