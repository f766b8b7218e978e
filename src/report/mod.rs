//! A study's results page: one self-contained HTML file (inline SVG,
//! readable offline) and a Markdown twin, from training runs and fits.
//!
//! It opens with the answer — the baseline's law and each family against
//! it, with intervals — then the paper's Figures 1, 2, 3, 6 and 7
//! (`figures`, drawn by `plot`), the tables (`tables`), the paper's Tables
//! 1–3 beside our counts, and the extra panels. Pure text and drawing; the
//! `report` node kind reads the inputs and writes the files.

mod fairness;
mod figures;
mod plot;
mod tables;

use std::fmt::Write as _;

use crate::fit::study::StudyFit;
use crate::fit::{Family, Run};
use crate::train::record::TrainRecord;
use crate::train::CostModel;
pub use fairness::{NamedFit, NamedSelection};
pub use figures::Figure;
pub(crate) use plot::PngRenderer;
use tables::{escape, Table};

/// A training run for the report: the fit's view of it and its record.
pub struct RunData {
    /// As the fit reads it.
    pub run: Run,
    /// Its `config.json`.
    pub record: TrainRecord,
}

/// The report, ready to write.
pub struct Page {
    /// The answer, sentence by sentence (the page's first paragraph).
    pub answer: Vec<String>,
    /// Every figure, paper's and extra, as SVG.
    pub figures: Vec<Figure>,
    /// `report.md`.
    pub markdown: String,
    /// `report.html`.
    pub html: String,
}

/// A section of the page: heading, paragraphs before, an optional table.
struct Section {
    heading: &'static str,
    paragraphs: Vec<String>,
    table: Option<Table>,
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;color:#222;line-height:1.45}\
table{border-collapse:collapse;margin:1em 0;font-size:0.92em}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}\
td.num,th.num{text-align:right;white-space:nowrap}th{background:#f3f3f3}figure{margin:1.5em 0}figcaption{color:#555}\
p.answer{font-size:1.08em;background:#f6f8fa;border-left:4px solid #1f77b4;padding:0.6em 1em}";

impl Page {
    /// The page titled `title` on `runs` (at least one), `fits` (the first
    /// is the study's main one) and the `selections` that chose runs.
    pub fn new(
        title: &str,
        mut runs: Vec<RunData>,
        named_fits: &[NamedFit<'_>],
        selections: &[NamedSelection],
    ) -> Result<Self, String> {
        let fits: Vec<&StudyFit> = named_fits.iter().map(|f| f.fit).collect();
        // Families together, each from its smallest model up.
        // The first fit's `baseline` setting says which family the others are set against.
        let baseline = fits.first().map_or(Family::BASELINE, |fit| fit.settings.baseline.clone());
        runs.sort_by(|a, b| {
            (a.run.group != baseline, &a.run.group, a.run.params.trainable).cmp(&(
                b.run.group != baseline,
                &b.run.group,
                b.run.params.trainable,
            ))
        });
        let mut figures = figures::figures(&runs, fits.first().copied(), &baseline)?;
        for s in selections {
            figures.extend(fairness::rate_figures(s)?);
        }

        let mut answer = fits
            .first()
            .map(|fit| tables::answer(fit, &runs))
            .unwrap_or_else(|| vec!["No fit among the inputs: runs only.".into()]);
        answer.extend(named_fits.iter().filter_map(fairness::verdict_sentence));
        let mut sections =
            vec![Section { heading: "Runs", paragraphs: vec![], table: Some(tables::runs_table(&runs)) }];
        for s in selections {
            sections.push(Section {
                heading: "Learning rates",
                paragraphs: vec![format!(
                    "`{}` kept, per group ({}), the {} value with the lowest {}{}; the lead is how much worse the runner-up ends (nats/token).",
                    s.node,
                    s.selection.group_by.join(", "),
                    s.selection.over,
                    s.selection.metric.describe(),
                    if s.selection.replicates.is_empty() {
                        String::new()
                    } else {
                        format!(" (the mean over {})", s.selection.replicates.join(", "))
                    }
                )],
                table: Some(fairness::rates_table(s)),
            });
        }
        if named_fits.iter().any(|f| !f.fit.statistics.families.is_empty()) {
            let mut paragraphs: Vec<String> = named_fits.iter().map(fairness::noise_sentence).collect();
            paragraphs.push("The multiplier's interval is the bootstrap's over runs, or least squares (a t interval on the runs' log multipliers, the baselines' law taken as exact) where the bootstrap can draw fewer than 100 distinct resamples. A verdict reads the whole interval against the margin: equivalent inside it; else better or worse where it excludes 1; else inconclusive (it contains 1 and crosses a bound) — an interval that merely contains 1 is not agreement. Paired differences set each run against the baselines' run at the same tokens and trainable N within 15%, mean over seeds, with a t interval over the pairs.".into());
            sections.push(Section {
                heading: "Against the baselines, protocol by protocol",
                paragraphs,
                table: Some(fairness::comparisons_table(named_fits)),
            });
            sections.push(Section {
                heading: "Exponents by both intervals",
                paragraphs: vec!["α of L = (C_c / C)^α on C = 6·N·D (N trainable), by the percentile bootstrap over runs and by least squares on the final points; with few runs a bootstrap has few distinct outcomes, and its percentiles sit on a handful of them.".into()],
                table: Some(fairness::alpha_table(named_fits)),
            });
        }
        for fit in fits.iter().copied() {
            sections.push(Section {
                heading: "Laws",
                paragraphs: vec![tables::REFERENCES.into()],
                table: Some(tables::laws_table(fit)),
            });
            sections.push(Section {
                heading: "Compute-optimal allocation",
                paragraphs: tables::optimal_paragraphs(fit),
                table: Some(tables::optimal_table(fit)),
            });
            if fit.multipliers.is_empty() {
                continue;
            }
            let base_law = fit.groups.get(&fit.settings.baseline).map(|g| &g.axes[&CostModel::Trainable].power_law);
            let section = match base_law.and_then(|l| l.why_not()) {
                Some(why) => Section {
                    heading: "Against the baseline's law",
                    paragraphs: vec![format!("The baselines have no identified law ({why}), so no family is set against it.")],
                    table: None,
                },
                None => Section {
                    heading: "Against the baseline's law",
                    paragraphs: vec!["The multiplier is the compute the baselines' law needs to reach a family's losses, over the compute the family used: 1 is on the law, below 1 worse, above 1 better. Families with fewer than three model sizes are compared run by run at their final points.".into()],
                    table: Some(tables::multipliers_table(fit)),
                },
            };
            sections.push(section);
        }
        sections.push(Section {
            heading: "The paper's Tables 1–3",
            paragraphs: vec![tables::PAPER_NOTE.into()],
            table: Some(tables::paper_table(&runs)),
        });

        let (paper_figs, extra_figs): (Vec<_>, Vec<_>) = figures.iter().partition(|f| f.stem.starts_with("fig"));
        let mut md = format!("# {title}\n\n{}\n\n", answer.join(" "));
        let mut html = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n<style>{STYLE}</style></head><body>\n<h1>{t}</h1>\n<p class=\"answer\">{a}</p>\n",
            t = escape(title),
            a = escape(&answer.join(" "))
        );
        let put_figures = |md: &mut String, html: &mut String, heading: &str, figs: &[&Figure]| {
            if figs.is_empty() {
                return;
            }
            let _ = write!(md, "## {heading}\n\n");
            let _ = writeln!(html, "<h2>{}</h2>", escape(heading));
            for f in figs {
                let _ = writeln!(md, "![{}](figures/{}.svg)\n", f.caption, f.stem);
                let _ = writeln!(
                    html,
                    "<figure id=\"{}\">{}<figcaption>{}</figcaption></figure>",
                    f.stem,
                    f.svg,
                    escape(&f.caption)
                );
            }
        };
        put_figures(&mut md, &mut html, "The paper's figures", &paper_figs);
        for s in &sections {
            let _ = write!(md, "## {}\n\n", s.heading);
            let _ = writeln!(html, "<h2>{}</h2>", escape(s.heading));
            for p in &s.paragraphs {
                let _ = write!(md, "{p}\n\n");
                let _ = writeln!(html, "<p>{}</p>", escape(p));
            }
            if let Some(t) = &s.table {
                let _ = writeln!(md, "{}", t.markdown());
                html.push_str(&t.html());
            }
        }
        put_figures(&mut md, &mut html, "More figures", &extra_figs);
        html.push_str("</body></html>\n");
        Ok(Page { answer, figures, markdown: md, html })
    }
}
