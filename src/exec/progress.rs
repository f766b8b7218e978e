//! The terminal during a run: an overall bar plus one line per running node
//! on a TTY; plain, greppable lines otherwise (CI logs, pipes).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::nodes::Progress;

pub(super) struct Reporter {
    bars: Option<(MultiProgress, ProgressBar)>,
    nodes: Mutex<HashMap<usize, ProgressBar>>,
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar())
}

impl Reporter {
    pub(super) fn new(total: u64, bars: bool) -> Self {
        let bars = bars.then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(total));
            overall.set_style(
                style("{spinner:.green} [{elapsed_precise}] [{bar:30.cyan/blue}] {pos}/{len} nodes {msg}")
                    .progress_chars("=> "),
            );
            overall.enable_steady_tick(Duration::from_millis(120));
            (multi, overall)
        });
        Reporter { bars, nodes: Mutex::new(HashMap::new()) }
    }

    pub(super) fn line(&self, text: &str) {
        match &self.bars {
            Some((multi, _)) => {
                let _ = multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    pub(super) fn tick(&self) {
        if let Some((_, overall)) = &self.bars {
            overall.inc(1);
        }
    }

    pub(super) fn started(&self, i: usize, id: &str) {
        if !self.add_line(i, id) {
            eprintln!("building {id}");
        }
    }

    /// A line for running node `i`, on a TTY; false elsewhere.
    fn add_line(&self, i: usize, prefix: &str) -> bool {
        let Some((multi, _)) = &self.bars else { return false };
        let bar = multi.add(ProgressBar::new_spinner());
        bar.set_style(style("  {spinner} {prefix:.bold} {elapsed} {wide_msg}"));
        bar.set_prefix(prefix.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        self.nodes.lock().expect("reporter lock").insert(i, bar);
        true
    }

    pub(super) fn progress(&self, i: usize, update: Progress) {
        let nodes = self.nodes.lock().expect("reporter lock");
        let Some(bar) = nodes.get(&i) else { return };
        match update {
            Progress::Position { done, total } => {
                if bar.length() != Some(total) {
                    bar.set_style(
                        style("  {prefix:.bold} [{bar:25}] {pos}/{len} {elapsed}<{eta} {wide_msg}")
                            .progress_chars("=> "),
                    );
                    bar.set_length(total);
                }
                bar.set_position(done);
            }
            Progress::Bytes { done, total, documents } => {
                if bar.length() != Some(total) {
                    bar.set_style(
                        style("  {prefix:.bold} [{bar:25}] {bytes}/{total_bytes} {bytes_per_sec} {elapsed}<{eta} {wide_msg}")
                            .progress_chars("=> "),
                    );
                    bar.set_length(total);
                }
                bar.set_position(done);
                let seconds = bar.elapsed().as_secs_f64().max(1e-3);
                bar.set_message(format!("{documents} documents ({:.0}/s)", documents as f64 / seconds));
            }
            Progress::Message(m) => bar.set_message(m),
        }
    }

    fn remove(&self, i: usize) {
        self.transfer_done(i);
        self.tick();
    }

    /// A transfer of node `i`'s artifact begins (`what`: "fetching x").
    pub(super) fn transfer(&self, i: usize, what: &str) {
        if !self.add_line(i, what) {
            eprintln!("{what}");
        }
    }

    /// Node `i`'s transfer or build ended: its line goes (the overall count
    /// is the caller's business).
    pub(super) fn transfer_done(&self, i: usize) {
        if let Some(bar) = self.nodes.lock().expect("reporter lock").remove(&i) {
            bar.finish_and_clear();
        }
    }

    pub(super) fn finished(&self, i: usize, id: &str, seconds: f64, by_other: bool) {
        self.remove(i);
        if by_other {
            self.line(&format!("   reused {id} (built by another process)"));
        } else {
            self.line(&format!("    built {id} in {seconds:.1}s"));
        }
    }

    pub(super) fn node_failed(&self, i: usize, id: &str, message: &str, log: &Path) {
        self.remove(i);
        self.line(&format!("   FAILED {id}: {message}\n          log: {}", log.display()));
    }

    pub(super) fn failed(&self, id: &str, message: &str) {
        self.tick();
        self.line(&format!("   FAILED {id}: {message}"));
    }

    pub(super) fn clear(&self) {
        if let Some((multi, overall)) = &self.bars {
            overall.finish_and_clear();
            let _ = multi.clear();
        }
    }
}
