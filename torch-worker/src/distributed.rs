//! Data-parallel ranks: where a rank meets the others and the collectives
//! it runs with them, through libtorch's own c10d (`csrc/distributed.cpp`):
//! a TCPStore rendezvous, ProcessGroupGloo on the CPU, ProcessGroupNCCL on
//! CUDA. Every collective waits at most the group's timeout, so a rank that
//! dies or hangs fails the others instead of stalling them.

use std::ffi::{c_char, c_void, CStr, CString};
use std::time::Duration;

use tch::Tensor;

extern "C" {
    fn scalemake_dist_backends() -> i32;
    fn scalemake_dist_init(
        host: *const c_char,
        port: i32,
        rank: i32,
        world: i32,
        backend: *const c_char,
        timeout_ms: i64,
        error: *mut c_char,
        error_len: usize,
    ) -> *mut c_void;
    fn scalemake_dist_free(group: *mut c_void);
    fn scalemake_dist_all_reduce_sum(
        group: *mut c_void,
        tensor: *const torch_sys::C_tensor,
        error: *mut c_char,
        error_len: usize,
    ) -> i32;
    fn scalemake_dist_broadcast(
        group: *mut c_void,
        tensor: *const torch_sys::C_tensor,
        root: i32,
        error: *mut c_char,
        error_len: usize,
    ) -> i32;
}

/// The environment variables that make a worker process one rank of a run.
pub mod env {
    /// This process's rank, 0 … world − 1.
    pub const RANK: &str = "SCALEMAKE_RANK";
    /// How many ranks the run has.
    pub const WORLD: &str = "SCALEMAKE_WORLD";
    /// `host:port` of rank 0's store.
    pub const MASTER: &str = "SCALEMAKE_MASTER";
    /// This rank's index among the ranks on its machine (its GPU).
    pub const LOCAL_RANK: &str = "SCALEMAKE_LOCAL_RANK";
}

/// A collective backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// gloo: CPU tensors.
    Gloo,
    /// NCCL: CUDA tensors.
    Nccl,
}

impl Backend {
    /// c10d's name of it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Gloo => "gloo",
            Backend::Nccl => "nccl",
        }
    }

    /// Whether this build of the worker has it (its headers were there at build time).
    pub fn is_built(self) -> bool {
        // SAFETY: a pure query of constants compiled into the shim.
        let built = unsafe { scalemake_dist_backends() };
        built & (if self == Backend::Gloo { 1 } else { 2 }) != 0
    }
}

/// Where and as what a rank joins its group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendezvous {
    /// Rank 0's host.
    pub host: String,
    /// The port rank 0's store listens on.
    pub port: u16,
    /// This rank.
    pub rank: usize,
    /// Ranks in all.
    pub world: usize,
    /// This rank's index on its machine.
    pub local_rank: usize,
    /// Ranks on this machine that share its cores (1 where Slurm gives
    /// each task its own).
    pub local_world: usize,
}

impl Rendezvous {
    /// The rank this process is, from [`env`] or, in a Slurm step of
    /// several tasks, from Slurm's own variables (`SLURM_PROCID`,
    /// `SLURM_NTASKS`, `SLURM_LOCALID`, with `SCALEMAKE_MASTER` set by the
    /// job script); `None` for a process that is not a rank.
    pub fn from_env() -> Result<Option<Rendezvous>, String> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (rank, world, local, shared) = match (var(env::RANK), var(env::WORLD)) {
            (Some(rank), Some(world)) => (rank, world, var(env::LOCAL_RANK), true),
            _ => match (var("SLURM_PROCID"), var("SLURM_NTASKS")) {
                (Some(rank), Some(world)) if var(env::MASTER).is_some() && world != "1" => {
                    (rank, world, var("SLURM_LOCALID"), false)
                }
                _ => return Ok(None),
            },
        };
        let number = |name: &str, v: &str| v.parse::<usize>().map_err(|_| format!("{name}={v}: not a number"));
        let rank = number("rank", &rank)?;
        let world = number("world", &world)?;
        let local_rank = local.as_deref().map(|l| number("local rank", l)).transpose()?.unwrap_or(rank);
        let master =
            var(env::MASTER).ok_or_else(|| format!("{} is not set: where does rank 0 listen?", env::MASTER))?;
        let (host, port) = master
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| format!("{}={master}: expected host:port", env::MASTER))?;
        if rank >= world {
            return Err(format!("rank {rank} of {world} ranks"));
        }
        Ok(Some(Rendezvous { host, port, rank, world, local_rank, local_world: if shared { world } else { 1 } }))
    }
}

/// This rank's membership of its group.
pub struct Group {
    handle: *mut c_void,
    /// This rank.
    pub rank: usize,
    /// Ranks in all.
    pub world: usize,
}

// SAFETY: the c10d backend is used from one thread at a time (the training
// loop's); moving the handle between threads is what c10d itself allows.
unsafe impl Send for Group {}

const ERROR_LEN: usize = 2048;

fn error_text(buffer: &[c_char]) -> String {
    // SAFETY: the shim writes a NUL-terminated string into the buffer (it was zeroed).
    unsafe { CStr::from_ptr(buffer.as_ptr()) }.to_string_lossy().into_owned()
}

impl Group {
    /// Joins the group of `at.world` ranks with `backend`: rank 0 serves the
    /// store at `at.host:at.port`, the others connect to it. Waits at most
    /// `timeout` for all of them, and each later collective as long.
    pub fn join(at: &Rendezvous, backend: Backend, timeout: Duration) -> Result<Group, String> {
        if !backend.is_built() {
            return Err(format!(
                "this build of scalemake-torch has no {} backend (its headers were missing when it was built: run scripts/setup.sh, then rebuild)",
                backend.name()
            ));
        }
        let host = CString::new(at.host.as_str()).map_err(|_| format!("host `{}`", at.host))?;
        let name = CString::new(backend.name()).expect("no NUL in a backend name");
        let mut error = vec![0 as c_char; ERROR_LEN];
        // SAFETY: valid C strings and an error buffer of the length given.
        let handle = unsafe {
            scalemake_dist_init(
                host.as_ptr(),
                i32::from(at.port),
                at.rank as i32,
                at.world as i32,
                name.as_ptr(),
                timeout.as_millis() as i64,
                error.as_mut_ptr(),
                error.len(),
            )
        };
        if handle.is_null() {
            return Err(format!(
                "rank {} of {} could not join the group at {}:{}: {}",
                at.rank,
                at.world,
                at.host,
                at.port,
                error_text(&error)
            ));
        }
        Ok(Group { handle, rank: at.rank, world: at.world })
    }

    /// Sums `tensor` over the ranks, in place (every rank gets the sum).
    pub fn all_reduce_sum(&self, tensor: &Tensor) -> Result<(), String> {
        let mut error = vec![0 as c_char; ERROR_LEN];
        // SAFETY: a live group handle, a live tensor, an error buffer of the length given.
        let rc =
            unsafe { scalemake_dist_all_reduce_sum(self.handle, tensor.as_ptr(), error.as_mut_ptr(), error.len()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("all-reduce failed: {}", error_text(&error)))
        }
    }

    /// Rank `root`'s `tensor` into every rank's, in place.
    pub fn broadcast(&self, tensor: &Tensor, root: usize) -> Result<(), String> {
        let mut error = vec![0 as c_char; ERROR_LEN];
        // SAFETY: as in all_reduce_sum.
        let rc = unsafe {
            scalemake_dist_broadcast(self.handle, tensor.as_ptr(), root as i32, error.as_mut_ptr(), error.len())
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!("broadcast failed: {}", error_text(&error)))
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: the handle came from scalemake_dist_init and is freed once.
        unsafe { scalemake_dist_free(self.handle) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_process_that_is_not_a_rank_says_so() {
        assert_eq!(Rendezvous::from_env(), Ok(None), "the test harness sets no rank variables");
    }

    /// One rank is a group too: the sum is the tensor itself. (The
    /// multi-process cases are tests/data_parallel.rs.)
    #[test]
    fn a_group_of_one_sums_to_itself() {
        assert!(Backend::Gloo.is_built(), "scripts/setup.sh unpacks gloo's headers; this build has none");
        let port = scalemake::process::free_port("127.0.0.1").unwrap();
        let at = Rendezvous { host: "127.0.0.1".into(), port, rank: 0, world: 1, local_rank: 0, local_world: 1 };
        let group = Group::join(&at, Backend::Gloo, Duration::from_secs(10)).unwrap();
        let t = Tensor::from_slice(&[1.0f32, 2.0]);
        group.all_reduce_sum(&t).unwrap();
        assert_eq!(Vec::<f32>::try_from(&t).unwrap(), [1.0, 2.0]);
    }
}
