//! What every command starts from: the directories, the experiment file,
//! and loading it into a [`Plan`].

use std::path::PathBuf;
use std::time::Instant;

use scalemake::cache::Cache;
use scalemake::graph::Plan;
use scalemake::nodes::Registry;
use scalemake::spec;

use super::{split_file_arg, CliError};

/// What every command needs to find its files.
#[derive(Clone)]
pub struct Env {
    pub root: PathBuf,
    pub cache_dir: PathBuf,
    pub file: Option<PathBuf>,
    pub tty: bool,
}

impl Env {
    pub(super) fn default_file(&self) -> Result<PathBuf, CliError> {
        ["scalemake.yaml", "experiments/tiny.yaml"]
            .iter()
            .map(PathBuf::from)
            .find(|p| self.root.join(p).is_file())
            .ok_or_else(|| CliError::Usage("no experiment file given and neither scalemake.yaml nor experiments/tiny.yaml exists here; pass one: `scalemake run FILE.yaml`".into()))
    }

    pub(super) fn cache(&self) -> Result<Cache, CliError> {
        Cache::open(&self.cache_dir).map_err(|e| CliError::Failed(e.to_string()))
    }
}

pub(super) fn load_plan(env: &Env, file: Option<PathBuf>) -> Result<Plan, CliError> {
    let file = match file {
        Some(f) => f,
        None => env.default_file()?,
    };
    let started = Instant::now();
    let experiment = spec::load(&file, &Registry::builtin())?;
    let plan = Plan::new(experiment).map_err(spec::LoadError::from)?;
    tracing::debug!("loaded {} ({} nodes) in {:?}", file.display(), plan.len(), started.elapsed());
    Ok(plan)
}

/// Loads the experiment named by `[FILE.yaml] targets…`.
pub(super) fn plan_and_targets(env: &Env, args: &[String]) -> Result<(Plan, Vec<String>), CliError> {
    let (file, targets) = split_file_arg(&env.file, args);
    let plan = load_plan(env, file)?;
    Ok((plan, targets.to_vec()))
}
