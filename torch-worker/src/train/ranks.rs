//! The ranks of a data-parallel run on this machine. The worker the engine
//! started is rank 0; it starts ranks 1 … N − 1 as its own children, so the
//! engine still sees one process for one node. The children die with it
//! (`PR_SET_PDEATHSIG`), and a child that dies is named in rank 0's error.
//! (On Slurm, `srun` starts the ranks instead; see `Rendezvous::from_env`.)

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::distributed::{env, Rendezvous};

/// Ranks 1 … N − 1, started by rank 0.
pub struct LocalRanks {
    children: Vec<(usize, Child)>,
}

/// How long rank 0 waits, after a collective failed, for the rank that
/// caused it to be seen exiting (its socket closes before it is reaped).
const EXIT_GRACE: Duration = Duration::from_secs(5);

impl LocalRanks {
    /// Starts ranks 1 … `world` − 1 of the job at `job_path` (this binary's
    /// `train` command), meeting rank 0 at 127.0.0.1 on a free port; returns
    /// them and rank 0's rendezvous.
    pub fn start(job_path: &Path, world: usize) -> Result<(LocalRanks, Rendezvous), String> {
        // A port the kernel just handed out and released: free for rank 0's store.
        let port = scalemake::process::free_port("127.0.0.1")
            .map_err(|e| format!("no free port for the ranks' rendezvous: {e}"))?;
        let exe = std::env::current_exe().map_err(|e| format!("the worker's own path: {e}"))?;
        let master = format!("127.0.0.1:{port}");
        let mut ranks = LocalRanks { children: Vec::new() };
        for rank in 1..world {
            let mut command = Command::new(&exe);
            command
                .arg("train")
                .arg(job_path)
                .env(env::RANK, rank.to_string())
                .env(env::WORLD, world.to_string())
                .env(env::LOCAL_RANK, rank.to_string())
                .env(env::MASTER, &master)
                // Events come from rank 0 only; logs go to the node's log.
                .stdout(Stdio::null())
                .stderr(Stdio::inherit());
            // SAFETY: prctl only sets a process attribute; async-signal-safe.
            unsafe {
                command.pre_exec(|| {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
            let child = command.spawn().map_err(|e| format!("starting rank {rank}: {e}"))?;
            ranks.children.push((rank, child));
        }
        Ok((ranks, Rendezvous { host: "127.0.0.1".into(), port, rank: 0, world, local_rank: 0, local_world: world }))
    }

    /// (rank, pid) of every rank: this process (rank 0) and its children.
    pub fn pids(&self) -> Vec<(u64, u32)> {
        let children = self.children.iter().map(|(rank, child)| (*rank as u64, child.id()));
        std::iter::once((0, std::process::id())).chain(children).collect()
    }

    /// Why the run failed, as far as the ranks say: the first child seen
    /// to exit unsuccessfully within [`EXIT_GRACE`], or `None`.
    pub fn failure(&mut self) -> Option<String> {
        let deadline = Instant::now() + EXIT_GRACE;
        loop {
            for (rank, child) in &mut self.children {
                if let Ok(Some(status)) = child.try_wait() {
                    if !status.success() {
                        return Some(format!("rank {rank} (pid {}) {}", child.id(), describe(status)));
                    }
                }
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for every child; the first that failed is the error.
    pub fn finish(mut self) -> Result<(), String> {
        let mut failed = None;
        for (rank, child) in &mut self.children {
            let pid = child.id();
            match child.wait() {
                Ok(status) if status.success() => {}
                Ok(status) => {
                    failed.get_or_insert_with(|| format!("rank {rank} (pid {pid}) {}", describe(status)));
                }
                Err(e) => {
                    failed.get_or_insert_with(|| format!("rank {rank} (pid {pid}): {e}"));
                }
            }
        }
        self.children.clear();
        failed.map_or(Ok(()), Err)
    }
}

impl Drop for LocalRanks {
    /// Ranks outliving rank 0's run would wait on it until their timeout.
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// "was killed by signal 9 (SIGKILL)" or "exited with status 1".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                libc::SIGKILL => " (SIGKILL)",
                libc::SIGTERM => " (SIGTERM)",
                libc::SIGSEGV => " (SIGSEGV)",
                libc::SIGABRT => " (SIGABRT)",
                _ => "",
            };
            format!("was killed by signal {signal}{name}")
        }
        (None, None) => "ended in an unknown way".into(),
    }
}
