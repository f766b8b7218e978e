//! The local backend: each started node builds on a worker thread of this
//! process, within the [`SlotPool`]'s CPU and GPU slots.

use std::sync::mpsc;
use std::thread::Scope;

use super::build::build_node;
use super::slots::{SlotPool, Take};
use super::{Input, KeyParts, Message, RunOptions, Runner, Slots, Start, Workspace};
use crate::graph::Plan;
use crate::hash::ContentHash;

/// Runs nodes on worker threads of `scope`.
pub(super) struct LocalRunner<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    plan: &'env Plan,
    ws: &'env Workspace<'env>,
    tx: mpsc::Sender<Message>,
    slots: SlotPool,
}

impl<'scope, 'env> LocalRunner<'scope, 'env> {
    pub(super) fn new(
        scope: &'scope Scope<'scope, 'env>,
        plan: &'env Plan,
        ws: &'env Workspace<'env>,
        opts: &RunOptions,
        tx: mpsc::Sender<Message>,
    ) -> Self {
        let slots = SlotPool::new(opts.jobs, opts.gpus, crate::device::cuda_device_count);
        LocalRunner { scope, plan, ws, tx, slots }
    }
}

impl Runner for LocalRunner<'_, '_> {
    fn start(&mut self, i: usize, key: ContentHash, parts: &KeyParts, inputs: &dyn Fn() -> Vec<Input>) -> Start {
        let node = &self.plan.experiment.nodes[i];
        let slots = match self.slots.take(&node.resources) {
            Take::Got(slots) => slots,
            Take::Busy => return Start::Busy,
            Take::Never(why) => return Start::Failed(why),
        };
        let (plan, ws, tx, parts, inputs) = (self.plan, self.ws, self.tx.clone(), parts.clone(), inputs());
        let log = ws.cache.node_log(&plan.experiment.name, &node.id.0);
        self.scope.spawn(move || {
            let result = build_node(plan, ws, i, key, &parts, &inputs, &slots.gpus, &log, &tx);
            let _ = tx.send(Message::Done(i, result.into(), slots));
        });
        Start::Started(None)
    }

    fn begin_pass(&mut self) {
        self.slots.begin_pass();
    }

    fn release(&mut self, slots: Slots) {
        self.slots.release(slots);
    }
}
