//! Child processes that die with scalemake.
//!
//! Node kinds that run programs (`command`'s shell, `train`'s libtorch
//! worker) start them through [`spawn_group`], so that none can outlive
//! scalemake or escape a cancellation: the child leads its own process group
//! (cancelling signals everything it started) and gets a parent-death signal
//! (`PR_SET_PDEATHSIG`: it hears of scalemake's death, even by SIGKILL).
//!
//! Arming the death signal races with the death it watches for: a parent
//! that dies between `fork` and `prctl` sends nothing, and the child would
//! run on as an orphan. So the child then checks that its parent is still
//! the process that forked it, and exits at once if not.

use std::io;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};

/// This machine's name (`/proc/sys/kernel/hostname`), as manifests record
/// it and as the other nodes of a Slurm job reach it.
pub fn hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    Some(name.trim().to_string()).filter(|n| !n.is_empty())
}

/// A TCP port on `host` that the kernel just handed out and released: free
/// for a server about to bind it (a data-parallel run's rendezvous store).
pub fn free_port(host: &str) -> io::Result<u16> {
    Ok(std::net::TcpListener::bind((host, 0))?.local_addr()?.port())
}

/// Set when this process is asked to stop but keep what can resume (a Slurm
/// job's time-limit warning or its preemption): a training node has its
/// worker checkpoint and stop instead of being killed.
static SUSPEND_REQUESTED: AtomicBool = AtomicBool::new(false);

/// Asks running nodes to stop at a resumable point (async-signal-safe: one
/// atomic store, so a signal handler may call it).
pub fn request_suspend() {
    SUSPEND_REQUESTED.store(true, Ordering::SeqCst);
}

/// Whether [`request_suspend`] was called.
pub fn suspend_requested() -> bool {
    SUSPEND_REQUESTED.load(Ordering::SeqCst)
}

/// Starts `cmd` as the leader of a new process group that receives
/// `death_signal` when this process dies, with `CUDA_VISIBLE_DEVICES` set
/// to the devices of the GPU slots `gpus` (left as inherited when empty).
///
/// The signal is sent when the *thread* that spawned the child exits (a
/// property of `PR_SET_PDEATHSIG`): spawn from a thread that outlives it,
/// as node kinds do by waiting for their child.
pub fn spawn_group(cmd: &mut Command, death_signal: libc::c_int, gpus: &[usize]) -> io::Result<Child> {
    if !gpus.is_empty() {
        let ids: Vec<String> = gpus.iter().map(|&slot| crate::device::visible_device(slot)).collect();
        cmd.env("CUDA_VISIBLE_DEVICES", ids.join(","));
    }
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: between fork and exec the closure makes only async-signal-safe
    // calls (setpgid, prctl, getppid, _exit; the test hook adds kill,
    // sched_yield and an atomic load) and allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            #[cfg(test)]
            tests::parent_dies_here(parent);
            if libc::prctl(libc::PR_SET_PDEATHSIG, death_signal) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                // The parent died before the death signal was armed.
                libc::_exit(1);
            }
            Ok(())
        });
    }
    cmd.spawn()
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::spawn_group;

    /// Set only in the intermediate process of the race test: its child
    /// kills it after `fork`, before the death signal is armed.
    static KILL_PARENT_BEFORE_ARMING: AtomicBool = AtomicBool::new(false);

    /// The test hook of [`spawn_group`]'s child, between `setpgid` and
    /// `prctl`: makes the parent's death land in the race window, every time.
    pub(super) fn parent_dies_here(parent: libc::pid_t) {
        if KILL_PARENT_BEFORE_ARMING.load(Ordering::Relaxed) {
            // SAFETY: async-signal-safe calls only; `parent` is our parent.
            unsafe {
                libc::kill(parent, libc::SIGKILL);
                while libc::getppid() == parent {
                    libc::sched_yield();
                }
            }
        }
    }

    /// Tells the re-executed test binary to play the intermediate parent.
    const ROLE: &str = "SCALEMAKE_TEST_DYING_PARENT";

    #[test]
    fn a_child_whose_parent_dies_before_arming_exits_without_running() {
        if std::env::var_os(ROLE).is_some() {
            // The intermediate parent: its child (which inherits this
            // process's stdout, the test's pipe) kills it during `spawn`.
            KILL_PARENT_BEFORE_ARMING.store(true, Ordering::Relaxed);
            let result = spawn_group(Command::new("sh").args(["-c", "echo orphan ran"]), libc::SIGKILL, &[]);
            panic!("the child did not kill its parent: {result:?}");
        }
        let name = concat!(module_path!(), "::a_child_whose_parent_dies_before_arming_exits_without_running");
        let name = name.split_once("::").map_or(name, |(_crate, path)| path);
        let exe = std::env::current_exe().expect("the test binary");
        // `output` reads stdout to its end, which comes once every process
        // holding it has exited: the intermediate parent and its child.
        let out = Command::new(exe)
            .args([name, "--exact", "--nocapture", "--test-threads=1"])
            .env(ROLE, "1")
            .stdin(Stdio::null())
            .output()
            .expect("run the test binary");
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "the intermediate parent was not killed by its child: {stdout}{stderr}"
        );
        assert!(!stdout.contains("orphan ran"), "the orphaned child ran its program: {stdout}");
    }
}
