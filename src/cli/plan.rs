//! `scalemake plan`: what a study will cost before anything runs — each
//! training node's parameter counts, tokens, FLOPs and GPU-hours — and the
//! same estimates on the lines of `run --dry-run`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use scalemake::exec;
use scalemake::nodes::WorkEstimate;
use scalemake::train::Throughput;
use scalemake::units::si;

use super::env::{plan_and_targets, Env};
use super::CliError;

/// FLOPs in PF-days, the paper's unit: "1.76", or "5.27e-7" on a CPU's scale.
fn pf_days(flops: f64) -> String {
    let days = flops / scalemake::train::PF_DAY;
    if days >= 0.01 {
        format!("{days:.3}")
    } else {
        format!("{days:.3e}")
    }
}

/// GPU time in hours, or minutes below six minutes.
pub fn duration(hours: f64) -> String {
    if hours < 0.1 {
        format!("{:.1} min", hours * 60.0)
    } else {
        format!("{hours:.2} h")
    }
}

/// One line's summary: "N 85.06M +35.42M frozen, 32.00G tokens, 1.6e19 FLOP, ~12.30 h on the GPU".
pub fn summary(e: &WorkEstimate, throughput: &Throughput) -> String {
    let mut extra = String::new();
    if e.params.frozen > 0 {
        extra.push_str(&format!(" +{} frozen", si(e.params.frozen as f64)));
    }
    if e.params.structured > 0 {
        extra.push_str(&format!(", {} structured", si(e.params.structured as f64)));
    }
    let hours = throughput.gpu_hours(e.flops, e.bf16).map_or(String::new(), |h| match e.devices {
        0 | 1 => format!(", ~{} on the GPU", duration(h)),
        n => format!(", ~{} of GPU time, ~{} on {n} GPUs", duration(h), duration(h / f64::from(n))),
    });
    format!("N {}{extra}, {} tokens, {:.2e} FLOP{hours}", si(e.params.trainable as f64), si(e.tokens), e.flops)
}

/// `--mfu` must be a utilisation: a fraction in (0, 1].
pub fn check_mfu(throughput: &Throughput) -> Result<(), CliError> {
    if throughput.mfu > 0.0 && throughput.mfu <= 1.0 {
        Ok(())
    } else {
        Err(CliError::Usage(format!("--mfu {} is not a fraction in (0, 1]", throughput.mfu)))
    }
}

pub fn plan(env: &Env, args: &[String], throughput: &Throughput) -> Result<ExitCode, CliError> {
    check_mfu(throughput)?;
    let (plan, targets) = plan_and_targets(env, args)?;
    let selected = exec::selection(&plan, &targets)?;
    let estimates = plan.estimates();
    let rows: Vec<(usize, &WorkEstimate)> = plan
        .topo_order()
        .iter()
        .filter(|i| selected.contains(i))
        .filter_map(|&i| estimates[i].as_ref().map(|e| (i, e)))
        .collect();
    let width = rows.iter().map(|(i, _)| plan.experiment.nodes[*i].id.0.len()).max().unwrap_or(4).max(4);
    // The paper's compute (C = 6·N·D, N trainable non-embedding) beside the
    // FLOPs the run really computes (output head, attention, frozen layers,
    // evaluations): both are "compute", and they differ by 3× at XXSmall.
    println!(
        "{:<width$}  {:>11} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>7} {:>9}",
        "node", "N trainable", "frozen", "structured", "tokens", "C=6·N·D", "FLOP", "GPU time", "devices", "wall"
    );
    let (mut paper_c, mut flops, mut hours, mut notes) = (0.0, 0.0, 0.0, BTreeSet::new());
    let mut parallel = false;
    for (i, e) in &rows {
        let h = throughput.gpu_hours(e.flops, e.bf16);
        let c = 6.0 * e.params.trainable as f64 * e.tokens;
        let devices = e.devices.max(1);
        parallel |= devices > 1;
        println!(
            "{:<width$}  {:>11} {:>10} {:>10} {:>9} {:>9.2e} {:>9.2e} {:>9} {:>7} {:>9}",
            plan.experiment.nodes[*i].id.0,
            si(e.params.trainable as f64),
            si(e.params.frozen as f64),
            si(e.params.structured as f64),
            si(e.tokens),
            c,
            e.flops,
            h.map_or("–".into(), duration),
            devices,
            h.map_or("–".into(), |h| duration(h / f64::from(devices)))
        );
        paper_c += c;
        flops += e.flops;
        hours += h.unwrap_or(0.0);
        notes.extend(e.note.clone());
    }
    let others = selected.len() - rows.len();
    println!(
        "total: {} training node(s), {flops:.3e} FLOP computed, {} on {} ({others} other node(s) not estimated: data prep, fits, reports)",
        rows.len(),
        duration(hours),
        throughput.describe()
    );
    println!(
        "C = 6·N·D is the paper's compute ({paper_c:.3e} in all, {} PF-days): trainable non-embedding parameters only; FLOP counts what runs (output head, attention, frozen layers, evaluations).",
        pf_days(paper_c)
    );
    if parallel {
        println!("wall: GPU time over the run's devices, as if they scaled perfectly (benches/RESULTS.md §4d estimates what the gradient exchange costs)");
    }
    for note in notes {
        println!("note: {note}");
    }
    isoflop_grid(&plan, &rows, throughput);
    Ok(ExitCode::SUCCESS)
}

/// The instances of `isoflop:` sweeps by budget: the shape each size got,
/// its N and D, and how close 6·N·D comes to the budget.
fn isoflop_grid(plan: &scalemake::graph::Plan, rows: &[(usize, &WorkEstimate)], throughput: &Throughput) {
    let mut grid: Vec<(&scalemake::spec::IsoflopPoint, usize, &WorkEstimate)> =
        rows.iter().filter_map(|&(i, e)| plan.experiment.nodes[i].isoflop.as_ref().map(|p| (p, i, e))).collect();
    if grid.is_empty() {
        return;
    }
    grid.sort_by(|a, b| a.0.budget.total_cmp(&b.0.budget).then(a.1.cmp(&b.1)));
    let width = grid.iter().map(|(_, i, _)| plan.experiment.nodes[*i].id.0.len()).max().unwrap_or(4).max(4);
    println!();
    println!("isoFLOP grid: C = 6·N·D per budget (N trainable non-embedding, D = max_tokens):");
    println!(
        "{:>9}  {:<width$}  {:>16} {:>9} {:>9} {:>7} {:>9} {:>9}",
        "budget", "node", "shape L×d (heads)", "N", "D", "6ND/C", "FLOP", "GPU time"
    );
    for (p, i, e) in grid {
        let shape = format!("{}×{} ({})", p.n_layer, p.d_model, p.n_head);
        println!(
            "{:>9.2e}  {:<width$}  {shape:>16} {:>9} {:>9} {:>7.4} {:>9.2e} {:>9}",
            p.budget,
            plan.experiment.nodes[i].id.0,
            si(p.trainable as f64),
            si(p.tokens as f64),
            p.budget_ratio(),
            e.flops,
            throughput.gpu_hours(e.flops, e.bf16).map_or("–".into(), duration)
        );
    }
}
