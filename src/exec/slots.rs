//! The slots of the local backend: `-j` CPU slots and one GPU slot per
//! visible device, handed to ready nodes in priority order without letting
//! narrow nodes starve a wide one. Pure bookkeeping, so scheduling can be
//! tested without threads or processes.

use crate::nodes::Resources;

/// The slots a running node holds: CPU count and specific GPU ids.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Slots {
    pub(super) cpu: usize,
    pub(super) gpus: Vec<usize>,
}

/// What [`SlotPool::take`] could do for a node.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Take {
    /// These slots are now the node's.
    Got(Slots),
    /// Not enough free now; the slots it lacks are held back for the pass.
    Busy,
    /// It can never run here (more GPUs than visible).
    Never(String),
}

/// How many GPUs libtorch sees, or why that is unknown.
pub(super) type GpuProbe = fn() -> Result<usize, String>;

/// Free and held-back slots of this machine.
pub(super) struct SlotPool {
    jobs: usize,
    cpu_free: usize,
    /// GPUs visible; `None` until a node first wants one (asking costs ~0.3 s).
    gpu_count: Option<usize>,
    probe: GpuProbe,
    probe_error: Option<String>,
    /// Free GPU ids; a node gets specific devices (as CUDA_VISIBLE_DEVICES).
    gpu_free: Vec<usize>,
    /// Slots held back in this pass for earlier ready nodes that did not fit,
    /// so that a stream of one-slot nodes cannot starve a wide one.
    cpu_reserved: usize,
    gpu_reserved: usize,
}

impl SlotPool {
    /// `jobs` CPU slots; `gpus` GPU slots, or `None` to ask `probe` when a
    /// node first needs one.
    pub(super) fn new(jobs: usize, gpus: Option<usize>, probe: GpuProbe) -> Self {
        let jobs = jobs.max(1);
        let gpu_free = gpus.map_or_else(Vec::new, |n| (0..n).collect());
        SlotPool {
            jobs,
            cpu_free: jobs,
            gpu_count: gpus,
            probe,
            probe_error: None,
            gpu_free,
            cpu_reserved: 0,
            gpu_reserved: 0,
        }
    }

    /// A new dispatch pass begins: nothing is held back any more.
    pub(super) fn begin_pass(&mut self) {
        (self.cpu_reserved, self.gpu_reserved) = (0, 0);
    }

    /// Takes the slots a node with `resources` needs. Nodes must be offered
    /// in priority order within a pass: one that does not fit holds back
    /// what it lacks (only that: a node waiting for a GPU does not stop
    /// CPU-only nodes) from the nodes offered after it.
    pub(super) fn take(&mut self, resources: &Resources) -> Take {
        let mut need_cpu = (resources.cpu as usize).min(self.jobs);
        let mut need_gpu = resources.gpu as usize;
        let visible = if need_gpu == 0 { 0 } else { self.visible_gpus() };
        if need_gpu > visible && resources.gpu_optional {
            // `device: auto` without a GPU trains on the CPU, on every core.
            need_gpu = 0;
            need_cpu = self.jobs;
        }
        if need_gpu > visible {
            let why = self.probe_error.as_ref().map(|e| format!(" (cannot ask libtorch: {e})")).unwrap_or_default();
            return Take::Never(format!("needs {need_gpu} GPU(s), {visible} visible{why}"));
        }
        // A node is short only of what it needs: without the `need > 0`
        // test, a node waiting for a GPU held back every CPU-only node.
        let cpu_short = need_cpu > 0 && need_cpu + self.cpu_reserved > self.cpu_free;
        let gpu_short = need_gpu > 0 && need_gpu + self.gpu_reserved > self.gpu_free.len();
        if cpu_short || gpu_short {
            self.cpu_reserved += if cpu_short { need_cpu } else { 0 };
            self.gpu_reserved += if gpu_short { need_gpu } else { 0 };
            return Take::Busy;
        }
        self.cpu_free -= need_cpu;
        Take::Got(Slots { cpu: need_cpu, gpus: self.gpu_free.drain(..need_gpu).collect() })
    }

    /// Gives back the slots of a finished node.
    pub(super) fn release(&mut self, slots: Slots) {
        self.cpu_free += slots.cpu;
        self.gpu_free.extend(slots.gpus);
        self.gpu_free.sort_unstable();
    }

    fn visible_gpus(&mut self) -> usize {
        if let Some(n) = self.gpu_count {
            return n;
        }
        let n = (self.probe)().unwrap_or_else(|e| {
            self.probe_error = Some(e);
            0
        });
        self.gpu_free = (0..n).collect();
        *self.gpu_count.insert(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn needs(cpu: u32, gpu: u32) -> Resources {
        Resources { cpu, gpu, gpu_optional: false, tasks: 1 }
    }

    fn never_asked() -> Result<usize, String> {
        panic!("the GPU count was given")
    }

    #[test]
    fn a_node_that_does_not_fit_holds_back_what_it_lacks_for_the_pass() {
        let mut pool = SlotPool::new(2, Some(0), never_asked);
        assert_eq!(pool.take(&needs(1, 0)), Take::Got(Slots { cpu: 1, gpus: vec![] }));
        pool.begin_pass();
        // 1 CPU free: the wide node waits and holds it back from a narrow one.
        assert_eq!(pool.take(&needs(2, 0)), Take::Busy);
        assert_eq!(pool.take(&needs(1, 0)), Take::Busy);
        // A new pass forgets what was held back.
        pool.begin_pass();
        assert_eq!(pool.take(&needs(1, 0)), Take::Got(Slots { cpu: 1, gpus: vec![] }));
    }

    #[test]
    fn a_node_waiting_for_a_gpu_does_not_hold_back_cpu_slots() {
        let mut pool = SlotPool::new(2, Some(1), never_asked);
        assert!(matches!(pool.take(&needs(1, 1)), Take::Got(_)));
        pool.begin_pass();
        assert_eq!(pool.take(&needs(1, 1)), Take::Busy);
        assert_eq!(pool.take(&needs(1, 0)), Take::Got(Slots { cpu: 1, gpus: vec![] }));
        // Nor does a wide CPU node hold back a GPU node that needs no CPU.
        pool.release(Slots { cpu: 0, gpus: vec![0] });
        pool.begin_pass();
        assert_eq!(pool.take(&needs(2, 0)), Take::Busy);
        assert_eq!(pool.take(&needs(0, 1)), Take::Got(Slots { cpu: 0, gpus: vec![0] }));
    }

    #[test]
    fn released_gpus_are_handed_out_lowest_first() {
        let mut pool = SlotPool::new(4, Some(3), never_asked);
        let Take::Got(a) = pool.take(&needs(1, 2)) else { panic!("two of three GPUs are free") };
        let Take::Got(b) = pool.take(&needs(1, 1)) else { panic!("one GPU is free") };
        assert_eq!((a.gpus.as_slice(), b.gpus.as_slice()), (&[0, 1][..], &[2][..]));
        pool.release(b);
        pool.release(a);
        assert_eq!(pool.take(&needs(1, 3)), Take::Got(Slots { cpu: 1, gpus: vec![0, 1, 2] }));
    }

    #[test]
    fn a_wide_request_is_capped_at_jobs() {
        let mut pool = SlotPool::new(2, Some(0), never_asked);
        assert_eq!(pool.take(&needs(8, 0)), Take::Got(Slots { cpu: 2, gpus: vec![] }));
    }

    #[test]
    fn gpus_are_counted_once_when_first_needed() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static ASKED: AtomicUsize = AtomicUsize::new(0);
        fn two() -> Result<usize, String> {
            ASKED.fetch_add(1, Ordering::Relaxed);
            Ok(2)
        }
        let mut pool = SlotPool::new(2, None, two);
        assert!(matches!(pool.take(&needs(1, 0)), Take::Got(_)));
        assert_eq!(ASKED.load(Ordering::Relaxed), 0, "a CPU-only node asked for GPUs");
        assert!(matches!(pool.take(&needs(0, 1)), Take::Got(_)));
        assert!(matches!(pool.take(&needs(0, 1)), Take::Got(_)));
        assert_eq!(pool.take(&needs(0, 1)), Take::Busy);
        assert_eq!(ASKED.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn without_a_gpu_an_optional_one_takes_every_cpu_and_a_required_one_never_runs() {
        fn unknown() -> Result<usize, String> {
            Err("no worker".into())
        }
        let mut pool = SlotPool::new(3, None, unknown);
        assert_eq!(
            pool.take(&needs(1, 1)),
            Take::Never("needs 1 GPU(s), 0 visible (cannot ask libtorch: no worker)".into())
        );
        assert_eq!(
            pool.take(&Resources { cpu: 1, gpu: 1, gpu_optional: true, tasks: 1 }),
            Take::Got(Slots { cpu: 3, gpus: vec![] })
        );
    }
}
