//! `report`: a study's results page (`crate::report`) from `train` nodes
//! (their [`TrainRecord`](crate::train::record::TrainRecord)s and
//! evaluations) and `fit` nodes (envelopes, laws, multipliers).
//!
//! Artifact: `report.html`, `report.md`, `figures/*.svg` and the same
//! figures as `figures/*.png` (rendered by resvg with the system's fonts, else a built-in DejaVu Sans).

use std::path::Path;

use super::runs::{read_selection, read_train_artifact, train_runs, SELECTION_FILE};
use super::{NodeCtx, NodeError, NodeKind};
use crate::fit::study::StudyFit;
use crate::report::{NamedFit, NamedSelection, Page, PngRenderer, RunData};
use crate::settings::{settings, FieldType, Schema, Settings};

settings! {
    /// The settings of a `report` node.
    pub struct ReportParams {
        /// the report's title
        title: String = [FieldType::Str] default("Scaling study"),
    }
}

/// The `report` node kind.
pub struct Report {
    schema: Schema,
}

impl Report {
    /// Creates the kind with its schema.
    pub fn new() -> Self {
        Report { schema: ReportParams::schema() }
    }
}

impl Default for Report {
    fn default() -> Self {
        Self::new()
    }
}

fn read_fit(dir: &Path) -> Result<StudyFit, NodeError> {
    let path = dir.join("fit.json");
    let bytes = std::fs::read(&path).map_err(|e| NodeError::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| NodeError::Failed(format!("{}: {e}", path.display())))
}

impl NodeKind for Report {
    fn name(&self) -> &'static str {
        "report"
    }

    /// 3: the answer on top, the paper's figures one to one, typed inputs;
    /// 4: selections (rates chosen, loss against rate), comparisons per
    /// protocol with verdicts, bands, PF-days on every compute axis.
    fn version(&self) -> u32 {
        4
    }

    fn schema(&self) -> &Schema {
        &self.schema
    }

    fn run(&self, ctx: &mut NodeCtx<'_>) -> Result<(), NodeError> {
        let ReportParams { title } = ctx.settings()?;
        let mut runs = Vec::new();
        let mut fits = Vec::new();
        let mut selections = Vec::new();
        for source in train_runs(ctx.inputs())? {
            let (run, record) = read_train_artifact(&source.id, &source.dir)?;
            runs.push(RunData { run, record });
        }
        for artifact in ctx.inputs().iter().flat_map(|i| &i.artifacts) {
            if artifact.dir.join("fit.json").exists() {
                fits.push((artifact.node.0.clone(), read_fit(&artifact.dir)?));
            }
            if artifact.dir.join(SELECTION_FILE).exists() {
                let selection = read_selection(&artifact.dir)?;
                selections.push(NamedSelection { node: artifact.node.0.clone(), selection });
            }
        }
        if runs.is_empty() {
            return Err(NodeError::Failed("no runs to report: give `input:` train nodes (and fit nodes)".into()));
        }
        let run_count = runs.len();
        let named: Vec<NamedFit<'_>> = fits
            .iter()
            .map(|(node, fit)| NamedFit { name: fit.settings.label.clone().unwrap_or_else(|| node.clone()), fit })
            .collect();
        let page = Page::new(&title, runs, &named, &selections).map_err(NodeError::Failed)?;
        let fig_dir = ctx.out_dir().join("figures");
        std::fs::create_dir_all(&fig_dir).map_err(|e| NodeError::io(&fig_dir, e))?;
        let png = PngRenderer::new();
        for f in &page.figures {
            let path = fig_dir.join(format!("{}.svg", f.stem));
            std::fs::write(&path, &f.svg).map_err(|e| NodeError::io(&path, e))?;
            let path = fig_dir.join(format!("{}.png", f.stem));
            let bytes = png.render(&f.svg).map_err(|e| NodeError::Failed(format!("{}.png: {e}", f.stem)))?;
            std::fs::write(&path, bytes).map_err(|e| NodeError::io(&path, e))?;
        }
        for (name, text) in [("report.md", &page.markdown), ("report.html", &page.html)] {
            let path = ctx.out_dir().join(name);
            std::fs::write(&path, text).map_err(|e| NodeError::io(&path, e))?;
        }
        ctx.add_summary(page.answer.join(" "));
        ctx.add_summary(format!(
            "{run_count} run(s), {} fit(s), {} figure(s): report.html, report.md, figures/*.svg and *.png",
            fits.len(),
            page.figures.len()
        ));
        Ok(())
    }
}
