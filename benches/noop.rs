//! No-op benchmark: how long do `scalemake status` and `scalemake run` take
//! when nothing has to be done? This is the latency of every "did I break
//! anything?" check, so it should feel instant.
//!
//! What it does, per DAG size (default 1,000 and 10,000 nodes):
//!
//! 1. Generates a project in a temp dir: 10,000 small input files
//!    (`data/d000..d999/f0..f9.txt`, mtimes an hour in the past) and a
//!    layered DAG of `command` nodes: 10 layers; each node past the first
//!    layer reads 1–3 nodes of the previous layer, and every node reads the
//!    10 files of one data directory through a glob (node k → `data/d{k % 1000}`;
//!    with 10,000 nodes, 10 nodes share a directory). Commands are trivial
//!    (`cat … | cksum > out`).
//! 2. Builds it once (`scalemake run -j2`), then times repeated no-op
//!    `scalemake status` and `scalemake run`: one untimed warm-up each (its
//!    output must say that nothing is to be done), then `BENCH_REPS` timed
//!    runs; wall clock of the whole process, output discarded; median, min
//!    and max reported.
//! 3. At the sizes in `BENCH_COMPARE` (default 1,000 nodes) it writes the
//!    *same* pipeline for DVC (`dvc.yaml`: one stage per node, deps = the
//!    node's data directory plus its upstream outputs) and for Snakemake
//!    (`Snakefile`: one rule per node, inputs = the globbed files plus
//!    upstream outputs), builds each once (DVC: the stage commands in order,
//!    then `dvc commit -f`, which leaves the same `dvc.lock` as `dvc repro`
//!    at a fraction of its time; `BENCH_DVC_REPRO=1` uses `dvc repro`;
//!    Snakemake: `snakemake --cores 2`)
//!    and times `dvc status` and `snakemake -n --cores 1` the same way. The
//!    timed runs are interleaved (round i runs every command once), so that
//!    noise on this shared machine hits every tool alike.
//!    A tool that is not installed is skipped, and the table says so.
//!
//! Run: `cargo bench --bench noop` (cargo builds the release binary itself;
//! `scripts/setup.sh` or `cargo build --release` also put it at
//! `target/release/scalemake`). Knobs (environment variables):
//!
//! | variable        | default                              | meaning                              |
//! |-----------------|--------------------------------------|--------------------------------------|
//! | `SCALEMAKE_BIN` | `target/release/scalemake`           | the binary under test                |
//! | `BENCH_SIZES`   | `1000,10000`                         | DAG sizes (node counts)              |
//! | `BENCH_COMPARE` | `1000`                               | sizes at which DVC/Snakemake run too |
//! | `BENCH_REPS`    | `10`                                 | timed runs per command               |
//! | `DVC`, `SNAKEMAKE` | `~/.cache/scalemake/bench-venv/bin/…`, else `$PATH` | the other tools |
//! | `BENCH_KEEP`    | unset                                | keep the generated projects          |
//! | `BENCH_DVC_REPRO` | unset                              | build the DVC project with `dvc repro` |
//!
//! The other tools are installed with
//! `python3 -m venv ~/.cache/scalemake/bench-venv && ~/.cache/scalemake/bench-venv/bin/pip install dvc snakemake`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

/// Input files: `DIRS` directories of `FILES_PER_DIR` files.
const DIRS: usize = 1000;
const FILES_PER_DIR: usize = 10;
const LAYERS: usize = 10;

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let sizes = env_list("BENCH_SIZES", &[1000, 10000]);
    let compare = env_list("BENCH_COMPARE", &[1000]);
    let reps: usize = std::env::var("BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let scalemake = scalemake_bin();
    let dvc = find_tool("DVC", "dvc");
    let snakemake = find_tool("SNAKEMAKE", "snakemake");
    println!("scalemake: {}", scalemake.display());
    println!(
        "dvc:       {}",
        dvc.as_ref().map_or("not found: DVC comparison skipped".into(), |p| format!(
            "{} ({})",
            p.display(),
            version(p, "--version")
        ))
    );
    println!(
        "snakemake: {}",
        snakemake.as_ref().map_or("not found: Snakemake comparison skipped".into(), |p| format!(
            "{} ({})",
            p.display(),
            version(p, "--version")
        ))
    );
    println!("{reps} timed runs per command after one warm-up; wall clock per process\n");

    let mut rows: Vec<Row> = Vec::new();
    let mut builds: Vec<(usize, &str, Duration)> = Vec::new();
    let mut deps: Vec<String> = Vec::new();
    for &n in &sizes {
        let dag = Dag::generate(n);
        deps.push(format!("{} at {n} nodes", dag.total_file_deps()));
        let tmp = tempfile::Builder::new().prefix(&format!("scalemake-noop-{n}-")).tempdir().expect("temp dir");
        let root = tmp.path();
        eprintln!("[{n} nodes] projects in {}", root.display());
        // Everything timed at this size; all are built before any is timed.
        let mut cases: Vec<Case> = Vec::new();

        let sm = root.join("scalemake");
        fs::create_dir_all(&sm).unwrap();
        write_data(&sm);
        fs::write(sm.join("scalemake.yaml"), dag.scalemake_yaml()).unwrap();
        builds.push((n, "scalemake run -j2", build(&sm, &scalemake, &["run", "-j2"])));
        cases.push(Case::new("scalemake", &sm, &scalemake, &["status"], &format!("all {n} node(s) fresh")));
        cases.push(Case::new("scalemake", &sm, &scalemake, &["run"], &format!("0 built, {n} fresh")));

        if compare.contains(&n) {
            match &dvc {
                Some(dvc) => {
                    let p = root.join("dvc");
                    fs::create_dir_all(p.join("out")).unwrap();
                    write_data(&p);
                    run_ok(&p, Path::new("git"), &["init", "-q"]);
                    run_ok(&p, dvc, &["init", "-q"]);
                    run_ok(&p, dvc, &["config", "core.analytics", "false"]);
                    run_ok(&p, dvc, &["config", "core.autostage", "false"]);
                    fs::write(p.join("dvc.yaml"), dag.dvc_yaml()).unwrap();
                    if std::env::var_os("BENCH_DVC_REPRO").is_some() {
                        builds.push((n, "dvc repro", build(&p, dvc, &["repro", "-q"])));
                    } else {
                        // `dvc repro` costs ~0.4 s per stage here (it rewrites
                        // dvc.lock after each); running the same commands and
                        // recording them with `dvc commit -f` leaves the same
                        // dvc.lock and cache, much faster.
                        eprintln!("  building: stage commands, then dvc commit -f");
                        let t = Instant::now();
                        for node in &dag.nodes {
                            run_ok(&p, Path::new("sh"), &["-c", &dag.dvc_cmd(node)]);
                        }
                        run_ok(&p, dvc, &["commit", "-f", "-q"]);
                        builds.push((n, "stage commands + dvc commit -f", t.elapsed()));
                    }
                    cases.push(Case::new("dvc", &p, dvc, &["status"], "Data and pipelines are up to date"));
                }
                None => rows.push(Row::skipped(n, "dvc", "dvc status")),
            }
            match &snakemake {
                Some(snakemake) => {
                    let p = root.join("snakemake");
                    fs::create_dir_all(&p).unwrap();
                    write_data(&p);
                    fs::write(p.join("Snakefile"), dag.snakefile()).unwrap();
                    builds.push((n, "snakemake --cores 2", build(&p, snakemake, &["--cores", "2", "--quiet", "all"])));
                    cases.push(Case::new("snakemake", &p, snakemake, &["-n", "--cores", "1"], "Nothing to be done"));
                    // The idiomatic alternative: one wildcard rule whose input
                    // function looks the node up (same jobs, same files).
                    let p = root.join("snakemake-wildcard");
                    fs::create_dir_all(&p).unwrap();
                    write_data(&p);
                    fs::write(p.join("Snakefile"), dag.snakefile_wildcard()).unwrap();
                    builds.push((
                        n,
                        "snakemake --cores 2 (1 wildcard rule)",
                        build(&p, snakemake, &["--cores", "2", "--quiet", "all"]),
                    ));
                    cases.push(Case::new(
                        "snakemake (1 wildcard rule)",
                        &p,
                        snakemake,
                        &["-n", "--cores", "1"],
                        "Nothing to be done",
                    ));
                }
                None => rows.push(Row::skipped(n, "snakemake", "snakemake -n")),
            }
        }

        let stats = measure(&cases, reps);
        let base = &stats[0];
        for (case, s) in cases.iter().zip(&stats) {
            let ratio = (case.tool != "scalemake").then_some(base);
            rows.push(Row::new(n, &case.tool, &case.command(), s, ratio));
        }
        if std::env::var_os("BENCH_KEEP").is_some() {
            eprintln!("[{n} nodes] kept {}", tmp.keep().display());
        }
    }
    rows.sort_by_key(|r| r.nodes);

    println!("## No-op status / run\n");
    println!("{} input files; layered DAG (10 layers, 1–3 inputs per node from the previous layer, a 10-file glob per node).", DIRS * FILES_PER_DIR);
    println!("Declared file dependencies (data files + upstream outputs, summed over nodes): {}.", deps.join(", "));
    println!("Ratios: the other tool's time / `scalemake status` time at the same size (median / median, min / min).");
    let others: Vec<String> = sizes.iter().filter(|n| !compare.contains(n)).map(|n| format!("{n}")).collect();
    if !others.is_empty() {
        println!(
            "DVC and Snakemake were not run at {} nodes (BENCH_COMPARE={}).",
            others.join(", "),
            compare.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(",")
        );
    }
    println!();
    println!("| nodes | tool | command | runs | median | min | max | ratio (median) | ratio (min) |");
    println!("|---:|---|---|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!("{}", r.markdown());
    }
    println!("\n## One-time builds (context, single run)\n");
    println!("| nodes | build | wall |");
    println!("|---:|---|---:|");
    for (n, what, d) in &builds {
        println!("| {n} | `{what}` | {:.1} s |", d.as_secs_f64());
    }
}

/// The generated pipeline: node k reads data directory `k % DIRS` and the
/// outputs of `inputs`.
struct Dag {
    nodes: Vec<Node>,
}

struct Node {
    name: String,
    dir: usize,
    inputs: Vec<usize>,
}

impl Dag {
    fn generate(n: usize) -> Dag {
        let width = (n / LAYERS).max(1);
        let mut rng = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move || {
            // xorshift64*: deterministic, so every run builds the same DAG.
            rng ^= rng >> 12;
            rng ^= rng << 25;
            rng ^= rng >> 27;
            rng.wrapping_mul(0x2545_f491_4f6c_dd1d) as usize
        };
        let nodes = (0..n)
            .map(|k| {
                let layer = k / width;
                let mut inputs = Vec::new();
                if layer > 0 {
                    let prev = (layer - 1) * width;
                    let count = 1 + next() % 3;
                    inputs = (0..count).map(|_| prev + next() % width).collect();
                    inputs.sort_unstable();
                    inputs.dedup();
                }
                Node { name: format!("n{k:05}"), dir: k % DIRS, inputs }
            })
            .collect();
        Dag { nodes }
    }

    fn total_file_deps(&self) -> usize {
        self.nodes.iter().map(|n| FILES_PER_DIR + n.inputs.len()).sum()
    }

    fn scalemake_yaml(&self) -> String {
        let mut s = String::from("name: noop-bench\nnodes:\n");
        for n in &self.nodes {
            let ins: Vec<String> =
                n.inputs.iter().map(|&i| format!("$IN_{}/x", self.nodes[i].name.to_uppercase())).collect();
            let names: Vec<&str> = n.inputs.iter().map(|&i| self.nodes[i].name.as_str()).collect();
            writeln!(s, "  {}:\n    kind: command", n.name).unwrap();
            if !names.is_empty() {
                writeln!(s, "    input: [{}]", names.join(", ")).unwrap();
            }
            writeln!(s, "    deps: [\"data/d{:03}/*.txt\"]", n.dir).unwrap();
            writeln!(s, "    cmd: cat data/d{:03}/*.txt {} | cksum > $OUT/x", n.dir, ins.join(" ")).unwrap();
            writeln!(s, "    outputs: [x]").unwrap();
        }
        s
    }

    /// DVC has no globs in deps: the node's data directory is the dep (DVC
    /// hashes every file under it).
    fn dvc_yaml(&self) -> String {
        let mut s = String::from("stages:\n");
        for n in &self.nodes {
            let ins: Vec<String> = n.inputs.iter().map(|&i| format!("out/{}.txt", self.nodes[i].name)).collect();
            writeln!(s, "  {}:", n.name).unwrap();
            writeln!(s, "    cmd: {}", self.dvc_cmd(n)).unwrap();
            writeln!(s, "    deps:\n    - data/d{:03}", n.dir).unwrap();
            for i in &ins {
                writeln!(s, "    - {i}").unwrap();
            }
            writeln!(s, "    outs:\n    - out/{}.txt", n.name).unwrap();
        }
        s
    }

    fn dvc_cmd(&self, n: &Node) -> String {
        let ins: Vec<String> = n.inputs.iter().map(|&i| format!("out/{}.txt", self.nodes[i].name)).collect();
        format!("cat data/d{:03}/*.txt {} | cksum > out/{}.txt", n.dir, ins.join(" "), n.name)
    }

    /// One rule per node, inputs globbed at parse time like scalemake's.
    fn snakefile(&self) -> String {
        let mut s = String::from("import glob\n\nrule all:\n    input:\n");
        for n in &self.nodes {
            writeln!(s, "        \"out/{}.txt\",", n.name).unwrap();
        }
        for n in &self.nodes {
            let ins: Vec<String> = n.inputs.iter().map(|&i| format!(", \"out/{}.txt\"", self.nodes[i].name)).collect();
            writeln!(s, "\nrule {}:", n.name).unwrap();
            writeln!(s, "    input: sorted(glob.glob(\"data/d{:03}/*.txt\")){}", n.dir, ins.concat()).unwrap();
            writeln!(s, "    output: \"out/{}.txt\"", n.name).unwrap();
            writeln!(s, "    shell: \"cat {{input}} | cksum > {{output}}\"").unwrap();
        }
        s
    }

    /// One wildcard rule; an input function returns each node's inputs.
    fn snakefile_wildcard(&self) -> String {
        let mut s = String::from("import glob\n\nNODES = {\n");
        for n in &self.nodes {
            let ins: Vec<String> = n.inputs.iter().map(|&i| format!("\"{}\"", self.nodes[i].name)).collect();
            writeln!(s, "    \"{}\": ({}, [{}]),", n.name, n.dir, ins.join(", ")).unwrap();
        }
        s.push_str(
            r#"}

def node_inputs(wildcards):
    d, ups = NODES[wildcards.node]
    return sorted(glob.glob(f"data/d{d:03}/*.txt")) + [f"out/{u}.txt" for u in ups]

wildcard_constraints:
    node="n[0-9]+"

rule all:
    input: expand("out/{node}.txt", node=NODES)

rule node:
    input: node_inputs
    output: "out/{node}.txt"
    shell: "cat {input} | cksum > {output}"
"#,
        );
        s
    }
}

/// Writes the input files under `root/data` (each tool's project gets an
/// identical copy), dated an hour ago so that no tool treats them as "just
/// modified" (racily clean) and declines to remember their digests.
fn write_data(root: &Path) {
    let past = SystemTime::now() - Duration::from_secs(3600);
    for d in 0..DIRS {
        let dir = root.join(format!("data/d{d:03}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..FILES_PER_DIR {
            let path = dir.join(format!("f{f}.txt"));
            fs::write(&path, format!("directory {d} file {f}\n").repeat(4)).unwrap();
            fs::File::options().write(true).open(&path).unwrap().set_modified(past).unwrap();
        }
    }
}

/// One untimed build; panics with the tool's output if it fails.
fn build(dir: &Path, program: &Path, args: &[&str]) -> Duration {
    eprintln!("  building: {} {}", program.display(), args.join(" "));
    let t = Instant::now();
    run_ok(dir, program, args);
    let d = t.elapsed();
    eprintln!("  built in {:.1} s", d.as_secs_f64());
    d
}

fn run_ok(dir: &Path, program: &Path, args: &[&str]) -> String {
    let out = command(dir, program, args).output().unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(
        out.status.success(),
        "{} {} failed in {}:\n{}",
        program.display(),
        args.join(" "),
        dir.display(),
        tail(&text)
    );
    text
}

fn command(dir: &Path, program: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(program);
    c.args(args).current_dir(dir).stdin(Stdio::null());
    // No network here; keep DVC from trying. Keep scalemake quiet.
    c.env("DVC_NO_ANALYTICS", "1")
        .env_remove("SCALEMAKE_LOG")
        .env_remove("SCALEMAKE_FILE")
        .env_remove("SCALEMAKE_CACHE");
    c
}

/// One command to time, run in its project directory.
struct Case {
    tool: String,
    dir: PathBuf,
    program: PathBuf,
    args: Vec<String>,
    /// Text its output must contain when nothing is to be done.
    expect: String,
}

impl Case {
    fn new(tool: &str, dir: &Path, program: &Path, args: &[&str], expect: &str) -> Case {
        Case {
            tool: tool.into(),
            dir: dir.into(),
            program: program.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            expect: expect.into(),
        }
    }

    fn command(&self) -> String {
        format!("{} {}", self.program.file_name().unwrap().to_string_lossy(), self.args.join(" "))
    }

    fn args(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

/// One untimed warm-up run of each case, whose output must contain its
/// `expect` text (proof that it really is a no-op); then `reps` rounds, each
/// timing every case once, so that machine noise hits all tools alike.
fn measure(cases: &[Case], reps: usize) -> Vec<Stats> {
    for c in cases {
        let text = run_ok(&c.dir, &c.program, &c.args());
        assert!(
            text.contains(&c.expect),
            "`{}` is not a no-op (expected `{}`):\n{}",
            c.command(),
            c.expect,
            tail(&text)
        );
    }
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); cases.len()];
    for round in 0..reps {
        for (c, times) in cases.iter().zip(&mut samples) {
            let t = Instant::now();
            let status =
                command(&c.dir, &c.program, &c.args()).stdout(Stdio::null()).stderr(Stdio::null()).status().unwrap();
            times.push(t.elapsed());
            assert!(status.success(), "`{}` failed", c.command());
        }
        let line: Vec<String> =
            cases.iter().zip(&samples).map(|(c, t)| format!("{} {}", c.command(), ms(t[round]))).collect();
        eprintln!("  round {round}: {}", line.join(", "));
    }
    samples.into_iter().map(Stats::of).collect()
}

struct Stats {
    runs: usize,
    median: Duration,
    min: Duration,
    max: Duration,
}

impl Stats {
    fn of(mut v: Vec<Duration>) -> Stats {
        v.sort();
        let n = v.len();
        let median = if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2 };
        Stats { runs: n, median, min: v[0], max: v[n - 1] }
    }
}

struct Row {
    nodes: usize,
    tool: String,
    command: String,
    stats: Option<(usize, Duration, Duration, Duration)>,
    /// (median ratio, min ratio) against scalemake status.
    ratio: Option<(f64, f64)>,
}

impl Row {
    fn new(nodes: usize, tool: &str, command: &str, s: &Stats, base: Option<&Stats>) -> Row {
        let ratio =
            base.map(|b| (s.median.as_secs_f64() / b.median.as_secs_f64(), s.min.as_secs_f64() / b.min.as_secs_f64()));
        Row { nodes, tool: tool.into(), command: command.into(), stats: Some((s.runs, s.median, s.min, s.max)), ratio }
    }

    fn skipped(nodes: usize, tool: &str, command: &str) -> Row {
        Row { nodes, tool: tool.into(), command: command.into(), stats: None, ratio: None }
    }

    fn markdown(&self) -> String {
        match self.stats {
            Some((runs, med, min, max)) => {
                let (r_med, r_min) =
                    self.ratio.map_or(("—".into(), "—".into()), |(a, b)| (format!("{a:.1}×"), format!("{b:.1}×")));
                format!(
                    "| {} | {} | `{}` | {runs} | {} | {} | {} | {r_med} | {r_min} |",
                    self.nodes,
                    self.tool,
                    self.command,
                    ms(med),
                    ms(min),
                    ms(max)
                )
            }
            None => {
                format!("| {} | {} | `{}` | — | skipped: not installed | | | | |", self.nodes, self.tool, self.command)
            }
        }
    }
}

fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 100.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

fn tail(s: &str) -> &str {
    let start = s.len().saturating_sub(3000);
    let start = (start..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
    &s[start..]
}

fn env_list(var: &str, default: &[usize]) -> Vec<usize> {
    match std::env::var(var) {
        Ok(s) if s.trim().is_empty() => Vec::new(),
        Ok(s) => {
            s.split(',').map(|x| x.trim().parse().unwrap_or_else(|_| panic!("{var}: not a number: {x}"))).collect()
        }
        Err(_) => default.to_vec(),
    }
}

/// `$SCALEMAKE_BIN`, else the binary cargo built for this bench, else
/// `target/release/scalemake`.
fn scalemake_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("SCALEMAKE_BIN") {
        return PathBuf::from(p);
    }
    if let Some(p) = option_env!("CARGO_BIN_EXE_scalemake") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/scalemake");
    assert!(p.is_file(), "{} not found: run `cargo build --release` (or scripts/setup.sh)", p.display());
    p
}

/// `$VAR`, else the bench venv, else `$PATH`.
fn find_tool(var: &str, name: &str) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(var) {
        return Some(PathBuf::from(p)).filter(|p| p.is_file());
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let venv = home.join(".cache/scalemake/bench-venv/bin").join(name);
    if venv.is_file() {
        return Some(venv);
    }
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()).map(|d| d.join(name)).find(|p| p.is_file())
}

fn version(program: &Path, flag: &str) -> String {
    Command::new(program)
        .arg(flag)
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_string())
        .unwrap_or_default()
}
