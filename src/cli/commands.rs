//! One function per subcommand. Each loads what it needs, prints, and maps
//! the outcome to an exit code; the engine does the work.

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::Instant;

use rayon::prelude::*;

use scalemake::cache::remote::Remote;
use scalemake::cache::Verdict;
use scalemake::config::JobSettings;
use scalemake::device;
use scalemake::exec::slurm::{self, JobRemote, SlurmOptions};
use scalemake::exec::{self, Backend, ExecError, Freshness, NodeState, OneBuild, Pulled, RunOptions, Workspace};
use scalemake::graph::Plan;
use scalemake::hash::ContentHash;
use scalemake::train::Throughput;

use super::env::{load_plan, plan_and_targets, Env};
use super::render::{self, human_bytes};
use super::{install_interrupt_handler, CliError, DagFormat, RemoteArgs, SlurmArgs};

/// The flags of `scalemake run`.
pub struct RunFlags {
    pub jobs: Option<usize>,
    pub keep_going: bool,
    pub dry_run: bool,
    /// Submit the whole DAG to Slurm and exit.
    pub detach: bool,
    /// The GPU and MFU that `--dry-run` quotes GPU time for.
    pub throughput: Throughput,
    /// `--backend slurm` and its options.
    pub slurm: Option<SlurmArgs>,
    /// The remote cache.
    pub remote: RemoteArgs,
}

pub fn run(env: &Env, args: &[String], flags: &RunFlags) -> Result<ExitCode, CliError> {
    let RunFlags { jobs, keep_going, dry_run, .. } = *flags;
    let started = Instant::now();
    let (plan, targets) = plan_and_targets(env, args)?;
    let cache = env.cache()?;
    let selected = exec::selection(&plan, &targets)?;
    let ws = Workspace { root: &env.root, cache: &cache };
    if dry_run {
        super::plan::check_mfu(&flags.throughput)?;
        dry_run_report(&plan, &ws, &selected, &flags.throughput);
        return Ok(ExitCode::SUCCESS);
    }
    install_interrupt_handler();
    let jobs = jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let remote = super::remote::open(env, &plan, &flags.remote)?;
    let backend = match &flags.slurm {
        None => Backend::Local,
        Some(s) => {
            let mut options = slurm_options(env, &plan, s, jobs)?;
            if flags.detach {
                options.job_remote =
                    remote.as_deref().map(|r| JobRemote { url: r.url().to_string(), read_only: r.read_only() });
            }
            Backend::Slurm(Box::new(options))
        }
    };
    if let (true, Backend::Slurm(options)) = (flags.detach, &backend) {
        return detach(&plan, &ws, options, remote.as_deref(), &targets, &selected, started);
    }
    let opts = RunOptions { jobs, gpus: None, keep_going, targets, progress_bars: env.tty, backend, remote };
    let summary = exec::run(&plan, &ws, &opts)?;
    let mut parts = vec![format!("{} built", summary.built.len())];
    if opts.remote.is_some() {
        parts.push(format!("{} fetched", summary.fetched.len()));
    }
    parts.push(format!("{} fresh", summary.fresh.len()));
    if !summary.uploaded.is_empty() {
        parts.push(format!("{} uploaded", summary.uploaded.len()));
    }
    if !summary.upload_failed.is_empty() {
        parts.push(format!("{} not uploaded (`scalemake push` retries)", summary.upload_failed.len()));
    }
    if !summary.failed.is_empty() {
        parts.push(format!("{} failed", summary.failed.len()));
    }
    if !summary.skipped.is_empty() {
        parts.push(format!("{} not run", summary.skipped.len()));
    }
    eprintln!("scalemake: {} in {:.2}s", parts.join(", "), started.elapsed().as_secs_f64());
    if summary.cancelled {
        eprintln!("scalemake: interrupted; finished nodes are kept, the next run resumes");
        return Ok(ExitCode::from(130));
    }
    if !summary.failed.is_empty() {
        for (id, message) in &summary.failed {
            eprintln!("scalemake: node {id} failed: {message}");
        }
        if !keep_going && !summary.skipped.is_empty() {
            eprintln!("hint: `scalemake run --keep-going` builds everything that does not depend on a failure");
        }
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Slurm settings: flags and `SCALEMAKE_SLURM_*` over the `scalemake.toml`
/// beside the experiment file; `-j` caps the jobs in flight.
fn slurm_options(env: &Env, plan: &Plan, args: &SlurmArgs, max_jobs: usize) -> Result<SlurmOptions, CliError> {
    let file = env.root.join(&plan.experiment.source.path);
    let config =
        scalemake::config::load(file.parent().unwrap_or(&env.root)).map_err(|e| CliError::Usage(e.to_string()))?;
    let flags = JobSettings {
        partition: args.slurm_partition.clone(),
        account: args.slurm_account.clone(),
        qos: args.slurm_qos.clone(),
        time: args.slurm_time.clone(),
        mem: args.slurm_mem.clone(),
    };
    Ok(SlurmOptions {
        jobs: flags.or(&config.slurm.all()),
        kinds: config.slurm.kinds,
        array_limit: config.slurm.array_limit,
        signal_grace: config.slurm.signal_grace.unwrap_or(slurm::DEFAULT_SIGNAL_GRACE),
        max_jobs,
        file: std::path::absolute(&file).map_err(|e| CliError::Failed(format!("{}: {e}", file.display())))?,
        exe: std::env::current_exe()
            .map_err(|e| CliError::Failed(format!("cannot find the scalemake executable: {e}")))?,
        job_remote: None,
    })
}

/// `run --dry-run`: each node that would build, why, and what training it costs.
fn dry_run_report(plan: &Plan, ws: &Workspace, selected: &BTreeSet<usize>, throughput: &Throughput) {
    let survey = exec::survey(plan, ws);
    let estimates = plan.estimates();
    let (mut will, mut may, mut hours) = (0, 0, 0.0);
    for &i in plan.topo_order().iter().filter(|i| selected.contains(i)) {
        // A helper builds only for a consumer that builds: it is as sure to as the surest of them.
        let consumers_build = |sure: bool| {
            plan.consumers_of(i)
                .into_iter()
                .any(|c| matches!(&survey[c], Freshness::Stale { key, .. } if key.is_some() || !sure))
        };
        let helper_needed = !plan.is_helper(i) || consumers_build(false);
        let verb = match &survey[i] {
            Freshness::Fresh { .. } => continue,
            Freshness::Stale { .. } if !helper_needed => continue,
            Freshness::Stale { .. } if plan.is_helper(i) && !consumers_build(true) => {
                may += 1;
                "may build"
            }
            Freshness::Stale { key: None, .. } => {
                may += 1;
                "may build"
            }
            Freshness::Stale { .. } => {
                will += 1;
                "will build"
            }
            Freshness::Broken { .. } => "cannot build",
        };
        let cost = estimates[i].as_ref().map_or(String::new(), |e| {
            hours += throughput.gpu_hours(e.flops, e.bf16).unwrap_or(0.0);
            format!(" [{}]", super::plan::summary(e, throughput))
        });
        println!("{verb} {}: {}{cost}", plan.experiment.nodes[i].id, survey[i].reasons_text());
    }
    println!("{will} node(s) will build; {may} more if their inputs' artifacts change ({} selected)", selected.len());
    if hours > 0.0 {
        println!(
            "training to build: ~{} of GPU time on {} (`scalemake plan` for the table; --gpu/--mfu to change)",
            super::plan::duration(hours),
            throughput.describe()
        );
    }
}

/// `run --backend slurm --detach`: submits, says what, and exits.
fn detach(
    plan: &Plan,
    ws: &Workspace,
    options: &SlurmOptions,
    remote: Option<&Remote>,
    targets: &[String],
    selected: &BTreeSet<usize>,
    started: Instant,
) -> Result<ExitCode, CliError> {
    // What the remote has needs no job (nor a place in the queue); the jobs
    // fetch and upload the rest themselves.
    if let Some(remote) = remote {
        for (id, pulled) in exec::pull(plan, ws, remote, targets)? {
            match pulled {
                Pulled::Fetched(bytes) => {
                    eprintln!("    {id} ← fetched from {} ({})", remote.url(), human_bytes(bytes))
                }
                Pulled::Failed(e) => eprintln!("    {id}: fetching failed ({e}); a job builds it"),
                Pulled::Fresh | Pulled::NotOnRemote | Pulled::Unknown => {}
            }
        }
    }
    let submitted = slurm::detach::submit(plan, ws, options, selected).map_err(|e| CliError::Failed(e.to_string()))?;
    for s in &submitted {
        let how = if s.adopted { "still queued or running from an earlier submission" } else { "submitted" };
        eprintln!("    {} → Slurm job {} ({how})", s.node, s.job);
    }
    let new = submitted.iter().filter(|s| !s.adopted).count();
    let arrays: BTreeSet<&str> =
        submitted.iter().filter(|s| !s.adopted).filter_map(|s| s.job.split_once('_').map(|(array, _)| array)).collect();
    eprintln!(
        "scalemake: {new} job(s) submitted ({} array(s)), {} adopted, in {:.2}s; `scalemake status` follows them, `scalemake cancel` stops them",
        arrays.len(),
        submitted.len() - new,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn cancel(env: &Env, args: &[String]) -> Result<ExitCode, CliError> {
    let (plan, targets) = plan_and_targets(env, args)?;
    let cache = env.cache()?;
    let selected = exec::selection(&plan, &targets)?;
    let nodes: BTreeSet<String> = selected.iter().map(|&i| plan.experiment.nodes[i].id.0.clone()).collect();
    let cancelled =
        slurm::cancel_recorded(&cache, &plan.experiment.name, &nodes).map_err(|e| CliError::Failed(e.to_string()))?;
    for (job, node) in &cancelled {
        println!("cancelled Slurm job {job} ({node})");
    }
    println!("{} Slurm job(s) cancelled", cancelled.len());
    Ok(ExitCode::SUCCESS)
}

/// Builds one node as the executor would (each Slurm job runs this).
/// Exit 1 when the node fails, with `scalemake: node failed: …` on stderr,
/// which the coordinator reads back from the job's output.
pub fn exec_node(
    env: &Env,
    args: &[String],
    key: Option<&str>,
    remote: Option<&str>,
    remote_read_only: bool,
) -> Result<ExitCode, CliError> {
    let (plan, rest) = plan_and_targets(env, args)?;
    let [name] = rest.as_slice() else {
        return Err(CliError::Usage("name exactly one node id".into()));
    };
    let i = plan
        .experiment
        .nodes
        .iter()
        .position(|n| n.id.0 == *name)
        .ok_or_else(|| CliError::Usage(format!("no node `{name}` in {}", plan.experiment.name)))?;
    let expected = key
        .map(|k| ContentHash::from_hex(k).ok_or_else(|| CliError::Usage(format!("--key {k}: not a key"))))
        .transpose()?;
    let remote = remote
        .map(|url| Remote::open(url, remote_read_only).map_err(|e| CliError::Usage(e.to_string())))
        .transpose()?;
    let cache = env.cache()?;
    let requeue = slurm::stop_on_job_signals().map_err(|e| CliError::Failed(e.to_string()))?;
    let gpus = slurm::job_gpus(plan.experiment.nodes[i].resources.gpu);
    let ws = Workspace { root: &env.root, cache: &cache };
    let result = exec::build_one(&plan, &ws, i, expected, &gpus, remote.as_ref());
    if requeue.load(std::sync::atomic::Ordering::SeqCst) {
        // The time-limit warning: the node checkpointed (or was stopped); put
        // this job back in the queue, where it resumes.
        slurm::requeue_this_job().map_err(|e| CliError::Failed(e.to_string()))?;
        eprintln!("scalemake: stopped before the time limit; job requeued, it resumes from the checkpoint");
        // Exiting now could race Slurm's processing of the requeue and end
        // the job as FAILED instead; the requeue stops this job itself.
        std::thread::sleep(slurm::REQUEUE_KILL_WAIT);
    }
    let url = remote.as_ref().map_or("", |r| r.url());
    match result {
        Ok(OneBuild::Fresh(artifact)) => {
            eprintln!("scalemake: {name} is fresh ({})", artifact.short());
            Ok(ExitCode::SUCCESS)
        }
        Ok(OneBuild::Fetched(artifact, bytes)) => {
            eprintln!("scalemake: fetched {name} ({}) from {url}, {}", artifact.short(), human_bytes(bytes));
            Ok(ExitCode::SUCCESS)
        }
        Ok(OneBuild::Built(artifact, uploaded)) => {
            eprintln!("scalemake: built {name} ({})", artifact.short());
            match uploaded {
                Some(Ok(bytes)) => eprintln!("scalemake: uploaded {name} to {url}, {}", human_bytes(bytes)),
                // The node is built and in the shared cache; only sharing it failed.
                Some(Err(e)) => eprintln!("scalemake: warning: uploading {name} to {url} failed: {e}"),
                None => {}
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ExecError::Node(message)) => {
            eprintln!("scalemake: node failed: {message}");
            Ok(ExitCode::from(1))
        }
        Err(e) => Err(CliError::Failed(e.to_string())),
    }
}

pub fn status(env: &Env, args: &[String], all: bool, remote: &RemoteArgs) -> Result<ExitCode, CliError> {
    let (plan, targets) = plan_and_targets(env, args)?;
    let cache = env.cache()?;
    let selected = exec::selection(&plan, &targets)?;
    let started = Instant::now();
    let survey = exec::survey(&plan, &Workspace { root: &env.root, cache: &cache });
    tracing::debug!("surveyed {} nodes in {:?}", plan.len(), started.elapsed());
    let states = exec::node_states(&plan, &cache, &survey);
    let remote = super::remote::open(env, &plan, remote)?;
    let on_remote = match &remote {
        Some(r) => r.keys().map_err(|e| CliError::Failed(e.to_string()))?,
        None => Default::default(),
    };
    let servable = |f: &Freshness| matches!(f, Freshness::Stale { key: Some(key), .. } if on_remote.contains(key));
    let (mut stale, mut fetchable) = (0, 0);
    let width = selected.iter().map(|&i| plan.experiment.nodes[i].id.0.len()).max().unwrap_or(0);
    let stale_ids: Vec<&str> = selected
        .iter()
        .filter(|&&i| states[i] != NodeState::Fresh)
        .map(|&i| plan.experiment.nodes[i].id.0.as_str())
        .collect();
    let jobs = slurm::detach::job_views(&cache, &plan.experiment.name, &stale_ids)
        .map_err(|e| CliError::Failed(e.to_string()))?;
    let mut out = String::new();
    for &i in plan.topo_order().iter().filter(|i| selected.contains(i)) {
        let fresh = states[i] == NodeState::Fresh;
        stale += usize::from(!fresh);
        if fresh && !all {
            continue;
        }
        let id = &plan.experiment.nodes[i].id.0;
        let remote_note = if servable(&survey[i]) { "; the remote has it" } else { "" };
        fetchable += usize::from(servable(&survey[i]));
        let (label, why) = match jobs.get(id) {
            Some(view) => view.describe(&cache, &plan.experiment.name, id),
            None => (states[i].label(), survey[i].reasons_text()),
        };
        let key = match &survey[i] {
            Freshness::Stale { key: Some(key), .. } => Some(key),
            _ => None,
        };
        let ranks_note = key
            .and_then(|key| scalemake::train::job::live_ranks_note(&cache.work_path(key)))
            .map_or(String::new(), |note| format!("; {note}"));
        out.push_str(&format!("{label:<7} {id:<width$}  {why}{remote_note}{ranks_note}\n"));
    }
    print!("{out}");
    if stale == 0 {
        println!("all {} node(s) fresh", selected.len());
    } else if let Some(r) = &remote {
        println!("{stale} of {} node(s) to build; {fetchable} of them can be fetched from {}", selected.len(), r.url());
    } else {
        println!("{stale} of {} node(s) to build", selected.len());
    }
    Ok(ExitCode::SUCCESS)
}

pub fn dag(env: &Env, args: &[String], format: DagFormat) -> Result<ExitCode, CliError> {
    let (plan, targets) = plan_and_targets(env, args)?;
    let cache = env.cache()?;
    let selected = exec::selection(&plan, &targets)?;
    let survey = exec::survey(&plan, &Workspace { root: &env.root, cache: &cache });
    let states = exec::node_states(&plan, &cache, &survey);
    print!("{}", render::dag(&plan, &selected, &states, &survey, format));
    Ok(ExitCode::SUCCESS)
}

/// Exactly one node named by the arguments.
fn one_node(env: &Env, args: &[String]) -> Result<(Plan, usize), CliError> {
    let (plan, rest) = plan_and_targets(env, args)?;
    let [name] = rest.as_slice() else {
        return Err(CliError::Usage("name exactly one node, e.g. `scalemake show tokenizer`".into()));
    };
    let hits = plan.match_pattern(name).map_err(CliError::Usage)?;
    match hits.as_slice() {
        [i] => Ok((plan, *i)),
        many => {
            let names: Vec<&str> = many.iter().map(|&i| plan.experiment.nodes[i].id.0.as_str()).collect();
            Err(CliError::Usage(format!("`{name}` names {} nodes: {}; pick one", many.len(), names.join(", "))))
        }
    }
}

pub fn show(env: &Env, args: &[String]) -> Result<ExitCode, CliError> {
    let (plan, i) = one_node(env, args)?;
    let cache = env.cache()?;
    let survey = exec::survey(&plan, &Workspace { root: &env.root, cache: &cache });
    let states = exec::node_states(&plan, &cache, &survey);
    print!("{}", render::show(&plan, i, &cache, &survey, states[i]));
    Ok(ExitCode::SUCCESS)
}

pub fn explain(env: &Env, args: &[String]) -> Result<ExitCode, CliError> {
    let (plan, i) = one_node(env, args)?;
    let cache = env.cache()?;
    let survey = exec::survey(&plan, &Workspace { root: &env.root, cache: &cache });
    print!("{}", render::explain(&plan, i, &cache, &survey));
    Ok(ExitCode::SUCCESS)
}

pub fn log(env: &Env, args: &[String]) -> Result<ExitCode, CliError> {
    let (plan, i) = one_node(env, args)?;
    let cache = env.cache()?;
    let id = &plan.experiment.nodes[i].id.0;
    let path = cache.node_log(&plan.experiment.name, id);
    match std::fs::read(&path) {
        Ok(bytes) => {
            use std::io::Write;
            let _ = std::io::stdout().write_all(&bytes);
            Ok(ExitCode::SUCCESS)
        }
        Err(_) => {
            Err(CliError::Failed(format!("no log for {id} yet (it has not run in this cache: {})", path.display())))
        }
    }
}

pub fn clean(env: &Env, args: &[String]) -> Result<ExitCode, CliError> {
    let (plan, patterns) = plan_and_targets(env, args)?;
    if patterns.is_empty() {
        return Err(CliError::Usage("name the node(s) to clean, e.g. `scalemake clean 'train[model=small]'`".into()));
    }
    let cache = env.cache()?;
    let mut nodes = BTreeSet::new();
    for p in &patterns {
        nodes.extend(plan.match_pattern(p).map_err(CliError::Usage)?);
    }
    let survey = exec::survey(&plan, &Workspace { root: &env.root, cache: &cache });
    let mut state = cache.state(&plan.experiment.name);
    for i in nodes {
        let id = &plan.experiment.nodes[i].id.0;
        let mut keys: Vec<ContentHash> = state.get(id).map(|r| r.key).into_iter().collect();
        if let Freshness::Fresh { key, .. } = survey[i] {
            keys.push(key);
        }
        let mut removed = false;
        for key in keys {
            removed |= cache.remove(&key).map_err(|e| CliError::Failed(e.to_string()))?;
        }
        state.forget(id).map_err(|e| CliError::Failed(format!("updating the state log: {e}")))?;
        println!("{} {id}", if removed { "removed" } else { "nothing cached for" });
    }
    Ok(ExitCode::SUCCESS)
}

pub fn verify(env: &Env, delete: bool) -> Result<ExitCode, CliError> {
    let cache = env.cache()?;
    let keys = cache.keys().map_err(|e| CliError::Failed(e.to_string()))?;
    let verdicts: Vec<(ContentHash, Result<Verdict, String>)> =
        keys.par_iter().map(|k| (*k, cache.verify(k).map_err(|e| e.to_string()))).collect();
    let mut bad = 0;
    for (key, verdict) in &verdicts {
        let reason = match verdict {
            Ok(Verdict::Ok) | Ok(Verdict::Missing) => continue,
            Ok(Verdict::Corrupt { reason }) => reason.clone(),
            Err(e) => e.clone(),
        };
        bad += 1;
        let node = cache.manifest(key).ok().flatten().map_or("?".to_string(), |m| m.node);
        println!("CORRUPT {} {node}: {reason}", key.short());
        if delete {
            cache.remove(key).map_err(|e| CliError::Failed(e.to_string()))?;
            println!("        removed; the next run rebuilds it");
        }
    }
    println!("verified {} artifact(s): {} ok, {bad} corrupt", verdicts.len(), verdicts.len() - bad);
    Ok(if bad > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn doctor(env: &Env) -> Result<ExitCode, CliError> {
    println!("scalemake      {}", env!("CARGO_PKG_VERSION"));
    println!("worker         {}", device::worker_path().display());
    let healthy = match device::report() {
        Ok(r) => {
            let text = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_string);
            println!("tch            {}", text(&r["tch"]));
            println!("libtorch       {}", text(&r["libtorch"]));
            println!("libtorch dir   {}", text(&r["libtorch_dir"]));
            match r["libtorch_cuda"]["loaded"].as_str() {
                Some(p) => println!("libtorch_cuda  loaded ({p})"),
                None => println!("libtorch_cuda  not loaded ({})", text(&r["libtorch_cuda"]["error"])),
            }
            let gpus = r["cuda_devices"].as_u64().unwrap_or(0);
            let cuda = if gpus > 0 {
                format!("available, {gpus} device(s)")
            } else {
                "not available (training runs on CPU)".into()
            };
            println!("CUDA           {cuda}");
            println!(
                "cuDNN          {}",
                if r["cudnn_available"].as_bool() == Some(true) { "available" } else { "not available" }
            );
            for (i, name) in r["gpu_names"].as_array().into_iter().flatten().enumerate() {
                println!("  cuda:{i}       {}", text(name));
            }
            println!("torch threads  {}", text(&r["cpu_threads"]));
            true
        }
        Err(e) => {
            println!("libtorch       UNAVAILABLE: {e}");
            println!("               hint: run scripts/setup.sh (it builds the worker next to scalemake)");
            false
        }
    };
    println!("CPU threads    {}", std::thread::available_parallelism().map_or(1, |n| n.get()));
    if env.cache_dir.exists() {
        let cache = env.cache()?;
        let objects = cache.keys().map(|k| k.len()).unwrap_or(0);
        println!(
            "cache          {} ({objects} artifact(s), {})",
            env.cache_dir.display(),
            render::human_bytes(cache.size_bytes())
        );
    } else {
        println!("cache          {} (not created yet)", env.cache_dir.display());
    }
    Ok(if healthy { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

pub fn serve(env: &Env, args: &[String], addr: std::net::SocketAddr) -> Result<ExitCode, CliError> {
    use scalemake::serve::{http, watch::Watcher};
    let (plan, rest) = plan_and_targets(env, args)?;
    if !rest.is_empty() {
        return Err(CliError::Usage(format!("serve watches a whole experiment; unexpected `{}`", rest.join(" "))));
    }
    // A cache that does not exist yet reads as empty: serve may start before the study.
    let experiment = plan.experiment.name.clone();
    let file = env.root.join(&plan.experiment.source.path);
    let watcher = Watcher::new(plan, &env.cache_dir, &env.root);
    let hub = http::Hub::new(&watcher);
    // An edit to the experiment file (a run added, a sweep widened) shows
    // without a restart; one that does not load leaves the last good plan.
    let reload_env = env.clone();
    let mut loaded = std::fs::read(&file).ok();
    let reload = move || {
        let now = std::fs::read(&file).ok();
        if now == loaded {
            return None;
        }
        loaded = now;
        match load_plan(&reload_env, Some(file.clone())) {
            Ok(plan) => {
                eprintln!("scalemake: {} changed: serving its {} node(s)", file.display(), plan.len());
                Some(Watcher::new(plan, &reload_env.cache_dir, &reload_env.root))
            }
            Err(e) => {
                e.print();
                eprintln!(
                    "scalemake: {} changed but does not load; still serving the last plan that did",
                    file.display()
                );
                None
            }
        }
    };
    http::start_poller(hub.clone(), watcher, std::time::Duration::from_secs(1), reload);
    let cache = env.cache_dir.display().to_string();
    http::serve(hub, addr, |bound| {
        if !bound.ip().is_loopback() {
            eprintln!(
                "scalemake: warning: listening on {bound}: anyone who can reach it sees the study (no authentication)"
            );
        }
        println!("serving {experiment} (cache {cache}) at http://{bound}/ — Ctrl-C stops");
        use std::io::Write;
        let _ = std::io::stdout().flush();
    })
    .map_err(|e| CliError::Failed(e.to_string()))?;
    Ok(ExitCode::SUCCESS)
}
