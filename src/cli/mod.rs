//! Argument parsing and dispatch: `main` → `try_main` → one function per command.

mod commands;
mod env;
mod gc;
mod plan;
mod remote;
mod render;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

use scalemake::spec::LoadError;

/// make for scaling-law experiments: build a study declared in one YAML file,
/// caching every step by content.
#[derive(Parser, Debug)]
#[command(name = "scalemake", version, about, long_about = None)]
pub struct Cli {
    /// Experiment file [default: scalemake.yaml, else experiments/tiny.yaml].
    #[arg(short = 'f', long = "file", global = true, env = "SCALEMAKE_FILE")]
    file: Option<PathBuf>,
    /// Cache directory [default: ./cache].
    #[arg(long, global = true, env = "SCALEMAKE_CACHE")]
    cache: Option<PathBuf>,
    /// More logging (-v debug, -vv trace).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Build targets (default: every node), skipping what is cached.
    Run {
        /// [FILE.yaml] then targets: `name`, `train[model=small]`, `train[*doped*]`.
        args: Vec<String>,
        /// Parallel CPU slots [default: number of cores].
        #[arg(short, long)]
        jobs: Option<usize>,
        /// Keep building what does not depend on a failed node.
        #[arg(short = 'k', long)]
        keep_going: bool,
        /// Say what would run and why, build nothing.
        #[arg(short = 'n', long)]
        dry_run: bool,
        /// The GPU and MFU `--dry-run` quotes training time for.
        #[command(flatten)]
        throughput: ThroughputArgs,
        /// Where nodes run: threads here, or one Slurm job per node.
        #[arg(long, value_enum, env = "SCALEMAKE_BACKEND", default_value_t = BackendKind::Local)]
        backend: BackendKind,
        /// With `--backend slurm`: submit the whole DAG (jobs wait for their inputs' jobs) and exit.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        slurm: SlurmArgs,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Cancel the queued and running Slurm jobs of targets (default: every node).
    Cancel {
        /// [FILE.yaml] then targets.
        args: Vec<String>,
    },
    /// Build one node whose inputs are built (what each Slurm job runs).
    #[command(hide = true)]
    ExecNode {
        /// [FILE.yaml] then the node id.
        args: Vec<String>,
        /// Fail unless the node's key is this one (the key it was submitted with).
        #[arg(long)]
        key: Option<String>,
        /// Fetch the node from this remote cache if it has it, else build
        /// and upload it (a detached run's jobs). Deliberately not read from
        /// $SCALEMAKE_REMOTE: an attached run's coordinator does the
        /// transfers of its jobs, which inherit its environment.
        #[arg(long, value_name = "URL")]
        remote: Option<String>,
        /// With --remote: fetch only, never upload.
        #[arg(long, requires = "remote")]
        remote_read_only: bool,
    },
    /// What the study will cost: parameter counts, tokens, FLOPs and GPU-hours per training node.
    Plan {
        /// [FILE.yaml] then targets.
        args: Vec<String>,
        #[command(flatten)]
        throughput: ThroughputArgs,
    },
    /// Each node's state and why it must rebuild (`--all`: fresh ones too), detached Slurm jobs included.
    Status {
        /// [FILE.yaml] then targets.
        args: Vec<String>,
        /// Also list fresh nodes.
        #[arg(short, long)]
        all: bool,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Upload built artifacts of targets (default: every node) that the remote lacks.
    Push {
        /// [FILE.yaml] then targets.
        args: Vec<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Fetch (and verify) artifacts of targets (default: every node) from the remote.
    Pull {
        /// [FILE.yaml] then targets.
        args: Vec<String>,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Print the DAG with each node's state.
    Dag {
        /// [FILE.yaml] then targets.
        args: Vec<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = DagFormat::Text)]
        format: DagFormat,
    },
    /// Show one node: params with defaults, key, inputs, artifact, reasons.
    Show {
        /// [FILE.yaml] then the node.
        args: Vec<String>,
    },
    /// Why a node must rebuild, or what it decided: a select's winner of each group and by how much.
    Explain {
        /// [FILE.yaml] then the node.
        args: Vec<String>,
    },
    /// Print the log of a node's latest attempt.
    Log {
        /// [FILE.yaml] then the node.
        args: Vec<String>,
    },
    /// Forget the cached artifacts of nodes so they rebuild.
    Clean {
        /// [FILE.yaml] then nodes or patterns.
        args: Vec<String>,
    },
    /// Remove cached artifacts that no given experiment file references.
    Gc {
        /// Experiment files whose artifacts to keep [default: the default file].
        files: Vec<PathBuf>,
        /// Actually delete (without it, only list what would go).
        #[arg(long)]
        delete: bool,
        /// Collect the remote cache instead (--remote=URL, else $SCALEMAKE_REMOTE or scalemake.toml).
        #[arg(long, value_name = "URL", num_args = 0..=1, require_equals = true, default_missing_value = "")]
        remote: Option<String>,
        /// With --remote: also remove what was last used longer ago than this (e.g. 30d, 12h).
        #[arg(long, requires = "remote")]
        max_age: Option<String>,
        /// With --remote: then remove least recently used objects until it holds at most this (e.g. 500G).
        #[arg(long, requires = "remote")]
        max_size: Option<String>,
    },
    /// Re-hash every cached artifact and report corruption.
    Verify {
        /// Delete corrupt artifacts so the next run rebuilds them.
        #[arg(long)]
        delete: bool,
    },
    /// Report libtorch, CUDA, devices and the cache.
    Doctor,
    /// A live dashboard on a local web page: the DAG, curves, fits, runs and logs (read-only).
    Serve {
        /// [FILE.yaml]: the experiment to watch.
        args: Vec<String>,
        /// Port to listen on (0: any free one; the address is printed).
        #[arg(long, default_value_t = 8600)]
        port: u16,
        /// Address to listen on. Anything but a loopback address lets other
        /// machines see the study (there is no authentication).
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
    },
}

/// `scalemake run --backend`.
/// What GPU time is quoted for (`plan`, `run --dry-run`).
#[derive(clap::Args, Debug, Clone)]
pub struct ThroughputArgs {
    /// GPU the hours are quoted for (its dense peak from the data sheet: H100, H200, A100, L4, …).
    #[arg(long, default_value = "H100")]
    gpu: String,
    /// Model FLOPs utilisation assumed for the GPU-hours. The default is
    /// what scalemake measured on an H200 for the paper's Small (12 × 768,
    /// bf16, batch 80 × 1024): 22.6%, as PyTorch eager (benches/RESULTS.md).
    #[arg(long, default_value_t = 0.22)]
    mfu: f64,
}

impl From<ThroughputArgs> for scalemake::train::Throughput {
    fn from(a: ThroughputArgs) -> Self {
        scalemake::train::Throughput { gpu: a.gpu, mfu: a.mfu }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendKind {
    /// Worker threads of this process, within `-j`.
    Local,
    /// One `sbatch` job per node, submitted when its inputs are built.
    Slurm,
}

/// Options of `--backend slurm`.
#[derive(clap::Args, Debug, Clone)]
pub struct SlurmArgs {
    /// Slurm partition (`sbatch --partition`).
    #[arg(long, env = "SCALEMAKE_SLURM_PARTITION")]
    slurm_partition: Option<String>,
    /// Slurm account (`sbatch --account`).
    #[arg(long, env = "SCALEMAKE_SLURM_ACCOUNT")]
    slurm_account: Option<String>,
    /// Slurm QOS (`sbatch --qos`).
    #[arg(long, env = "SCALEMAKE_SLURM_QOS")]
    slurm_qos: Option<String>,
    /// Time limit of each job (`sbatch --time`, e.g. 1-00:00:00) [default: the partition's].
    #[arg(long, env = "SCALEMAKE_SLURM_TIME")]
    slurm_time: Option<String>,
    /// Memory of each job (`sbatch --mem`, e.g. 16G) [default: the cluster's].
    #[arg(long, env = "SCALEMAKE_SLURM_MEM")]
    slurm_mem: Option<String>,
}

// The remote cache of `run`, `status`, `push` and `pull`; else `[remote]` of
// `scalemake.toml`. (Not a doc comment: clap would show a flattened struct's
// doc as the help of a subcommand that has none of its own.)
#[derive(clap::Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// Remote cache shared with other machines: file:///shared/dir or s3://bucket/prefix.
    #[arg(long, value_name = "URL", env = "SCALEMAKE_REMOTE")]
    remote: Option<String>,
    /// Fetch from the remote but never upload to it.
    #[arg(long, env = "SCALEMAKE_REMOTE_READ_ONLY")]
    remote_read_only: bool,
}

/// `scalemake dag --format`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DagFormat {
    /// Indented list.
    Text,
    /// Graphviz.
    Dot,
    /// Mermaid flowchart.
    Mermaid,
    /// Machine-readable.
    Json,
}

/// A failure of the command line itself, mapped to an exit code.
#[derive(Debug)]
pub enum CliError {
    /// Bad usage or input: exit 2.
    Usage(String),
    /// Experiment file errors: exit 2, rendered with source snippets.
    Load(LoadError),
    /// Something failed at run time: exit 1.
    Failed(String),
}

/// A bad target is the user's input (2); the cache, Slurm or a node failing
/// mid-run is a failure (1).
impl From<scalemake::exec::ExecError> for CliError {
    fn from(e: scalemake::exec::ExecError) -> Self {
        match e {
            scalemake::exec::ExecError::Target(_) => CliError::Usage(e.to_string()),
            _ => CliError::Failed(e.to_string()),
        }
    }
}

impl From<LoadError> for CliError {
    fn from(e: LoadError) -> Self {
        CliError::Load(e)
    }
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    // tiny_skia warns about zero-length dashes in plots, which are harmless.
    let filter = match cli.verbose {
        0 => "warn,tiny_skia=error",
        1 => "scalemake=debug,tiny_skia=error",
        _ => "scalemake=trace",
    };
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("SCALEMAKE_LOG").unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .without_time()
        .init();
    // Long lines, not wrapped: messages stay greppable and copy-pasteable.
    let _ = miette::set_hook(Box::new(|_| Box::new(miette::MietteHandlerOpts::new().wrap_lines(false).build())));
    match try_main(cli) {
        Ok(code) => code,
        Err(e) => {
            let code = e.exit_code();
            e.print();
            code
        }
    }
}

impl CliError {
    /// Says what went wrong on stderr: experiment file errors with their
    /// source snippets and hints, the rest in one line.
    pub(super) fn print(self) {
        match self {
            CliError::Load(LoadError::Spec(errors)) => {
                let count = errors.0.len();
                for e in errors.0 {
                    eprintln!("{:?}", miette::Report::new(e));
                }
                eprintln!("scalemake: {count} error(s) in the experiment file; nothing was run");
            }
            CliError::Load(e) => eprintln!("scalemake: error: {e}"),
            CliError::Usage(msg) | CliError::Failed(msg) => eprintln!("scalemake: error: {msg}"),
        }
    }

    /// 2 for bad input or usage, 1 for a failure.
    fn exit_code(&self) -> ExitCode {
        match self {
            CliError::Usage(_) | CliError::Load(_) => ExitCode::from(2),
            CliError::Failed(_) => ExitCode::from(1),
        }
    }
}

fn try_main(cli: Cli) -> Result<ExitCode, CliError> {
    let root =
        std::env::current_dir().map_err(|e| CliError::Usage(format!("cannot read the current directory: {e}")))?;
    let cache_dir = cli.cache.clone().unwrap_or_else(|| root.join("cache"));
    let env = env::Env { root, cache_dir, file: cli.file.clone(), tty: std::io::stderr().is_terminal() };
    match cli.command {
        Command::Run { args, jobs, keep_going, dry_run, throughput, backend, detach, slurm, remote } => {
            if detach && backend != BackendKind::Slurm {
                return Err(CliError::Usage("--detach submits Slurm jobs: add `--backend slurm`".into()));
            }
            let backend = (backend == BackendKind::Slurm).then_some(slurm);
            let flags = commands::RunFlags {
                jobs,
                keep_going,
                dry_run,
                detach,
                throughput: throughput.into(),
                slurm: backend,
                remote,
            };
            commands::run(&env, &args, &flags)
        }
        Command::Cancel { args } => commands::cancel(&env, &args),
        Command::ExecNode { args, key, remote, remote_read_only } => {
            commands::exec_node(&env, &args, key.as_deref(), remote.as_deref(), remote_read_only)
        }
        Command::Plan { args, throughput } => plan::plan(&env, &args, &throughput.into()),
        Command::Status { args, all, remote } => commands::status(&env, &args, all, &remote),
        Command::Push { args, remote } => remote::push(&env, &args, &remote),
        Command::Pull { args, remote } => remote::pull(&env, &args, &remote),
        Command::Dag { args, format } => commands::dag(&env, &args, format),
        Command::Show { args } => commands::show(&env, &args),
        Command::Explain { args } => commands::explain(&env, &args),
        Command::Log { args } => commands::log(&env, &args),
        Command::Clean { args } => commands::clean(&env, &args),
        Command::Gc { files, delete, remote: Some(url), max_age, max_size } => {
            remote::gc(&env, &files, delete, &url, max_age.as_deref(), max_size.as_deref())
        }
        Command::Gc { files, delete, .. } => gc::gc(&env, &files, delete),
        Command::Verify { delete } => commands::verify(&env, delete),
        Command::Doctor => commands::doctor(&env),
        Command::Serve { args, port, host } => commands::serve(&env, &args, std::net::SocketAddr::new(host, port)),
    }
}

/// Splits `[FILE.yaml] rest...` into the experiment file and the rest.
fn split_file_arg<'a>(env_file: &Option<PathBuf>, args: &'a [String]) -> (Option<PathBuf>, &'a [String]) {
    match args.first() {
        Some(first) if env_file.is_none() && is_yaml(first) => (Some(PathBuf::from(first)), &args[1..]),
        _ => (env_file.clone(), args),
    }
}

fn is_yaml(arg: &str) -> bool {
    let p = Path::new(arg);
    matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
}

/// First Ctrl-C: stop cleanly (running nodes are cancelled, nothing partial
/// is committed). Second: exit at once; staging dirs are swept next run.
fn install_interrupt_handler() {
    let _ = ctrlc::set_handler(|| {
        if scalemake::exec::CANCELLED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
}

#[cfg(test)]
mod help_tests {
    use super::Cli;
    use clap::CommandFactory;

    /// Each subcommand's first `--help` line is its own: documented, and
    /// shared with no other (a flattened struct's doc once stood in for `status`'s).
    #[test]
    fn every_subcommand_describes_itself() {
        let cli = Cli::command();
        let mut seen = std::collections::HashMap::new();
        for sub in cli.get_subcommands().filter(|s| s.get_name() != "help") {
            let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
            assert!(!about.is_empty(), "`{}` has no help line", sub.get_name());
            assert!(!about.contains("remote cache (`run`"), "`{}`: {about}", sub.get_name());
            if let Some(other) = seen.insert(about.clone(), sub.get_name().to_string()) {
                panic!("`{}` and `{other}` share the help line {about:?}", sub.get_name());
            }
        }
        let status = cli.find_subcommand("status").unwrap().get_about().unwrap().to_string();
        assert!(status.starts_with("Each node's state"), "{status}");
    }
}
