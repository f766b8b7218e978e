//! The remote cache's commands: `push`, `pull`, `gc --remote`, and where
//! every command finds the remote (flag, `$SCALEMAKE_REMOTE`, `[remote]`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use scalemake::cache::remote::{Remote, RemoteObject};
use scalemake::exec::{self, Pulled, Pushed, Workspace};
use scalemake::graph::Plan;

use super::env::{plan_and_targets, Env};
use super::gc::{gc_files, referenced_keys};
use super::render::human_bytes;
use super::{install_interrupt_handler, CliError, RemoteArgs};

/// Data of an upload that never published its manifest is removed by
/// `gc --remote` once it is this old: no upload runs that long.
const ABANDONED_AFTER: Duration = Duration::from_secs(24 * 3600);

/// The remote of a command on `plan`: `--remote`/`$SCALEMAKE_REMOTE`, else
/// `[remote]` of the `scalemake.toml` beside the experiment file.
pub(super) fn open(env: &Env, plan: &Plan, args: &RemoteArgs) -> Result<Option<Arc<Remote>>, CliError> {
    let file = env.root.join(&plan.experiment.source.path);
    open_beside(&file, args)
}

fn open_beside(experiment_file: &Path, args: &RemoteArgs) -> Result<Option<Arc<Remote>>, CliError> {
    let dir = experiment_file.parent().unwrap_or(Path::new("."));
    let config = scalemake::config::load(dir).map_err(|e| CliError::Usage(e.to_string()))?.remote;
    let Some(url) = args.remote.clone().or(config.url) else { return Ok(None) };
    let remote =
        Remote::open(&url, args.remote_read_only || config.read_only).map_err(|e| CliError::Usage(e.to_string()))?;
    Ok(Some(Arc::new(remote)))
}

fn required(remote: Option<Arc<Remote>>) -> Result<Arc<Remote>, CliError> {
    remote.ok_or_else(|| {
        CliError::Usage(
            "no remote: pass --remote URL, set SCALEMAKE_REMOTE, or add [remote] url = \"…\" to scalemake.toml".into(),
        )
    })
}

pub fn push(env: &Env, args: &[String], remote: &RemoteArgs) -> Result<ExitCode, CliError> {
    let (plan, targets) = plan_and_targets(env, args)?;
    let remote = required(open(env, &plan, remote)?)?;
    if remote.read_only() {
        return Err(CliError::Usage(format!("remote {} is read-only here; push needs write access", remote.url())));
    }
    let cache = env.cache()?;
    install_interrupt_handler();
    let pushed = exec::push(&plan, &Workspace { root: &env.root, cache: &cache }, &remote, &targets)?;
    let (mut sent, mut there, mut failed) = (0, 0, 0);
    for (id, outcome) in &pushed {
        match outcome {
            Pushed::Uploaded(bytes) => {
                sent += 1;
                println!("pushed {id} ({})", human_bytes(*bytes));
            }
            Pushed::AlreadyThere => there += 1,
            Pushed::NotBuilt => println!("not built here, skipped: {id}"),
            Pushed::Failed(e) => {
                failed += 1;
                println!("FAILED {id}: {e}");
            }
        }
    }
    println!("{sent} pushed, {there} already on {}, {failed} failed", remote.url());
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

pub fn pull(env: &Env, args: &[String], remote: &RemoteArgs) -> Result<ExitCode, CliError> {
    let (plan, targets) = plan_and_targets(env, args)?;
    let remote = required(open(env, &plan, remote)?)?;
    let cache = env.cache()?;
    install_interrupt_handler();
    let pulled = exec::pull(&plan, &Workspace { root: &env.root, cache: &cache }, &remote, &targets)?;
    let (mut fetched, mut fresh, mut missing, mut failed) = (0, 0, 0, 0);
    for (id, outcome) in &pulled {
        match outcome {
            Pulled::Fetched(bytes) => {
                fetched += 1;
                println!("pulled {id} ({}, digests verified)", human_bytes(*bytes));
            }
            Pulled::Fresh => fresh += 1,
            Pulled::NotOnRemote | Pulled::Unknown => missing += 1,
            Pulled::Failed(e) => {
                failed += 1;
                println!("FAILED {id}: {e}");
            }
        }
    }
    println!(
        "{fetched} pulled, {fresh} already here, {missing} not on {} (run builds them), {failed} failed",
        remote.url()
    );
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `gc --remote`: removes, least recently used first, what is older than
/// `max_age` and then what exceeds `max_size`, never a key that the
/// experiments in `files` reference; plus data of uploads that never
/// finished. A shared remote serves many experiments, so nothing goes
/// merely for being unreferenced here: a budget is required.
pub fn gc(
    env: &Env,
    files: &[PathBuf],
    delete: bool,
    url: &str,
    max_age: Option<&str>,
    max_size: Option<&str>,
) -> Result<ExitCode, CliError> {
    let max_age = max_age.map(parse_age).transpose().map_err(CliError::Usage)?;
    let max_size = max_size.map(parse_size).transpose().map_err(CliError::Usage)?;
    if max_age.is_none() && max_size.is_none() {
        return Err(CliError::Usage(
            "gc --remote needs a budget: --max-age (e.g. 30d) and/or --max-size (e.g. 500G)".into(),
        ));
    }
    let first = gc_files(env, files)?.remove(0);
    let url = Some(url.to_string()).filter(|u| !u.is_empty()).or_else(|| std::env::var("SCALEMAKE_REMOTE").ok());
    let args = RemoteArgs { remote: url, remote_read_only: false };
    let remote = required(open_beside(&env.root.join(first), &args)?)?;
    let cache = env.cache()?;
    let keep = referenced_keys(env, &cache, files)?;
    let objects = remote.objects().map_err(|e| CliError::Failed(e.to_string()))?;
    let doomed = choose(objects, &keep, SystemTime::now(), max_age, max_size);
    let mut freed = 0;
    for o in &doomed {
        if delete {
            remote.remove(&o.key).map_err(|e| CliError::Failed(e.to_string()))?;
        }
        let age = SystemTime::now().duration_since(o.last_used).unwrap_or_default().as_secs() / 3600;
        let what = if o.published { "" } else { ", unfinished upload" };
        println!(
            "{} {} ({}, last used {age} h ago{what})",
            if delete { "removed" } else { "would remove" },
            o.key.short(),
            human_bytes(o.bytes)
        );
        freed += o.bytes;
    }
    // Files a killed upload was writing, which no listing shows.
    let partial = remote.partial_files(ABANDONED_AFTER);
    for (path, bytes) in &partial {
        if delete {
            remote.remove_partial_file(path).map_err(|e| CliError::Failed(e.to_string()))?;
        }
        let verb = if delete { "removed" } else { "would remove" };
        println!("{verb} {} ({}, part of a killed upload)", path.display(), human_bytes(*bytes));
        freed += bytes;
    }
    let verb = if delete { "removed" } else { "would remove (pass --delete to do it)" };
    println!(
        "{verb}: {} object(s) and {} partial file(s), {} from {}; {} referenced key(s) kept",
        doomed.len(),
        partial.len(),
        human_bytes(freed),
        remote.url(),
        keep.len()
    );
    Ok(ExitCode::SUCCESS)
}

/// Which remote objects `gc --remote` removes, least recently used first.
fn choose(
    mut objects: Vec<RemoteObject>,
    keep: &BTreeSet<scalemake::hash::ContentHash>,
    now: SystemTime,
    max_age: Option<Duration>,
    max_size: Option<u64>,
) -> Vec<RemoteObject> {
    objects.sort_by_key(|o| o.last_used);
    let age = |o: &RemoteObject| now.duration_since(o.last_used).unwrap_or_default();
    let mut total: u64 = objects.iter().map(|o| o.bytes).sum();
    let mut doomed = Vec::new();
    for o in objects {
        if keep.contains(&o.key) {
            continue;
        }
        let abandoned = !o.published && age(&o) > ABANDONED_AFTER;
        let too_old = max_age.is_some_and(|m| age(&o) > m);
        let over_budget = max_size.is_some_and(|m| total > m);
        if abandoned || too_old || over_budget {
            total -= o.bytes;
            doomed.push(o);
        }
    }
    doomed
}

/// `30d`, `12h`, `90m`, `45s`.
fn parse_age(text: &str) -> Result<Duration, String> {
    let bad = || format!("--max-age {text}: expected a number and a unit: 30d, 12h, 90m, 45s");
    let (number, unit) = text.split_at(text.find(|c: char| c.is_ascii_alphabetic()).ok_or_else(bad)?);
    let n: f64 = number.trim().parse().map_err(|_| bad())?;
    let seconds = match unit {
        "d" => 86400.0,
        "h" => 3600.0,
        "m" => 60.0,
        "s" => 1.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(n * seconds).map_err(|_| bad())
}

/// `500G`, `1.5T`, `200MiB`, `1024` (binary units: K = 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let bad = || format!("--max-size {text}: expected bytes with an optional unit: 500G, 1.5T, 200M");
    let split = text.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let n: f64 = number.trim().parse().map_err(|_| bad())?;
    let shift = match unit.trim_end_matches("iB").trim_end_matches('B') {
        "" => 0,
        "K" | "k" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(bad()),
    };
    if n.is_nan() || n < 0.0 {
        return Err(bad());
    }
    Ok((n * (1u64 << shift) as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use scalemake::hash::ContentHash;

    fn object(name: &str, bytes: u64, hours_ago: u64, published: bool, now: SystemTime) -> RemoteObject {
        RemoteObject {
            key: ContentHash::of(name.as_bytes()),
            bytes,
            last_used: now - Duration::from_secs(hours_ago * 3600),
            published,
        }
    }

    #[test]
    fn budgets_remove_least_recently_used_first_and_never_what_is_referenced() {
        let now = SystemTime::now();
        let objects = vec![
            object("new", 100, 1, true, now),
            object("old", 100, 50, true, now),
            object("kept", 100, 90, true, now),
            object("mid", 100, 10, true, now),
        ];
        let keep: BTreeSet<ContentHash> = [ContentHash::of(b"kept")].into();
        let names = |v: Vec<RemoteObject>| v.iter().map(|o| o.key).collect::<Vec<_>>();
        // 400 bytes in all, at most 200: the two oldest unreferenced go.
        assert_eq!(
            names(choose(objects.clone(), &keep, now, None, Some(200))),
            vec![ContentHash::of(b"old"), ContentHash::of(b"mid")]
        );
        assert_eq!(
            names(choose(objects.clone(), &keep, now, Some(Duration::from_secs(24 * 3600)), None)),
            vec![ContentHash::of(b"old")]
        );
        let abandoned = vec![object("half", 5, 30, false, now), object("uploading", 5, 1, false, now)];
        assert_eq!(names(choose(abandoned, &keep, now, None, Some(u64::MAX))), vec![ContentHash::of(b"half")]);
    }

    #[test]
    fn ages_and_sizes_parse() {
        assert_eq!(parse_age("30d"), Ok(Duration::from_secs(30 * 86400)));
        assert_eq!(parse_age("1.5h"), Ok(Duration::from_secs(5400)));
        assert!(parse_age("30").is_err() && parse_age("3w").is_err());
        assert_eq!(parse_size("500G"), Ok(500 << 30));
        assert_eq!(parse_size("2MiB"), Ok(2 << 20));
        assert_eq!(parse_size("1024"), Ok(1024));
        assert!(parse_size("x").is_err() && parse_size("5Q").is_err());
    }
}
