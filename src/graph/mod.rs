//! The DAG of node instances, cycle detection and target selection.
//!
//! A [`Plan`] is immutable once built: it owns the [`Experiment`], a petgraph
//! graph with an edge from every input to its consumer, and a topological
//! order. Target selection returns the targets plus everything upstream.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::{Dfs, Reversed};
use petgraph::Direction;

use crate::nodes::WorkEstimate;
use crate::spec::{Experiment, SpecError};

/// A validated, acyclic experiment.
pub struct Plan {
    /// The experiment (node `i` of the graph is `experiment.nodes[i]`).
    pub experiment: Experiment,
    graph: DiGraph<usize, ()>,
    order: Vec<usize>,
}

impl Plan {
    /// Builds the DAG; a cycle is reported at one of the references that closes it.
    pub fn new(experiment: Experiment) -> Result<Self, SpecError> {
        let mut graph = DiGraph::new();
        let idx: Vec<NodeIndex> = (0..experiment.nodes.len()).map(|i| graph.add_node(i)).collect();
        for (consumer, node) in experiment.nodes.iter().enumerate() {
            for input in &node.inputs {
                for &producer in &input.nodes {
                    graph.update_edge(idx[producer], idx[consumer], ());
                }
            }
        }
        let order = stable_topo_order(&graph).ok_or_else(|| cycle_error(&experiment, &graph))?;
        Ok(Plan { experiment, graph, order })
    }

    /// Node indices, every node after all of its inputs.
    pub fn topo_order(&self) -> &[usize] {
        &self.order
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.experiment.nodes.len()
    }

    /// True if the experiment has no nodes.
    pub fn is_empty(&self) -> bool {
        self.experiment.nodes.is_empty()
    }

    /// Every node's planned cost (`None` for kinds that do not estimate). A
    /// kind that asks for an upstream param gets the nearest ancestor's,
    /// breadth-first, so a `train` node sees its tokenizer's vocabulary.
    pub fn estimates(&self) -> Vec<Option<WorkEstimate>> {
        (0..self.len())
            .map(|i| {
                let upstream = |key: &str| crate::spec::upstream_param(&self.experiment.nodes, i, key);
                let node = &self.experiment.nodes[i];
                node.kind.estimate(&node.params, &upstream)
            })
            .collect()
    }

    /// Direct upstream nodes of `i` (deduplicated, in input order).
    /// Node `i`'s inputs that enter its key (all but helpers).
    pub fn key_inputs_of(&self, i: usize) -> Vec<usize> {
        self.inputs_where(i, |input| !input.order_only)
    }

    /// Node `i`'s helpers: built before it builds, outside its key.
    pub fn order_only_inputs_of(&self, i: usize) -> Vec<usize> {
        self.inputs_where(i, |input| input.order_only)
    }

    /// The distinct nodes of node `i`'s input references that `keep` accepts, in order.
    fn inputs_where(&self, i: usize, keep: impl Fn(&crate::spec::InputSpec) -> bool) -> Vec<usize> {
        let mut out: Vec<usize> = Vec::new();
        for input in self.experiment.nodes[i].inputs.iter().filter(|input| keep(input)) {
            for &p in &input.nodes {
                if !out.contains(&p) {
                    out.push(p);
                }
            }
        }
        out
    }

    /// Whether some node has `i` as a helper and none as a key input: it
    /// is built only for a node that builds.
    pub fn is_helper(&self, i: usize) -> bool {
        let consumers = self.consumers_of(i);
        !consumers.is_empty()
            && consumers.iter().all(|&c| {
                self.experiment.nodes[c].inputs.iter().all(|input| input.order_only || !input.nodes.contains(&i))
            })
    }

    /// Every input of node `i`, helpers included.
    pub fn inputs_of(&self, i: usize) -> Vec<usize> {
        self.inputs_where(i, |_| true)
    }

    /// Direct downstream nodes of `i`.
    pub fn consumers_of(&self, i: usize) -> Vec<usize> {
        let mut out: Vec<usize> = self.graph.neighbors(NodeIndex::new(i)).map(|n| self.graph[n]).collect();
        out.sort_unstable();
        out
    }

    /// The targets named by `patterns` plus all their upstream nodes; every
    /// node when `patterns` is empty. A pattern is an instance id, a
    /// declaration (`train`), a filter (`train[model=small]`) or a glob over
    /// ids (`train[*doped*]`).
    pub fn select(&self, patterns: &[String]) -> Result<BTreeSet<usize>, String> {
        if patterns.is_empty() {
            return Ok((0..self.len()).collect());
        }
        let mut wanted = BTreeSet::new();
        for pattern in patterns {
            let hits = self.match_pattern(pattern)?;
            for hit in hits {
                let reversed = Reversed(&self.graph);
                let mut dfs = Dfs::new(reversed, NodeIndex::new(hit));
                while let Some(n) = dfs.next(reversed) {
                    wanted.insert(self.graph[n]);
                }
            }
        }
        Ok(wanted)
    }

    /// Nodes matched by one pattern, without their upstream.
    pub fn match_pattern(&self, pattern: &str) -> Result<Vec<usize>, String> {
        self.experiment.select(pattern).map_err(|(msg, hint)| match hint {
            Some(h) => format!("{msg} ({h})"),
            None => msg,
        })
    }
}

/// Kahn's algorithm taking the lowest ready index first, so that listings and
/// scheduling follow file order wherever dependencies allow. `None` on a cycle.
fn stable_topo_order(graph: &DiGraph<usize, ()>) -> Option<Vec<usize>> {
    let n = graph.node_count();
    let mut indegree: Vec<usize> =
        (0..n).map(|i| graph.neighbors_directed(NodeIndex::new(i), Direction::Incoming).count()).collect();
    let mut ready: BinaryHeap<Reverse<usize>> = (0..n).filter(|&i| indegree[i] == 0).map(Reverse).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(Reverse(i)) = ready.pop() {
        order.push(i);
        for next in graph.neighbors(NodeIndex::new(i)) {
            let j = next.index();
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.push(Reverse(j));
            }
        }
    }
    (order.len() == n).then_some(order)
}

fn cycle_error(experiment: &Experiment, graph: &DiGraph<usize, ()>) -> SpecError {
    let scc = tarjan_scc(graph).into_iter().find(|c| c.len() > 1).unwrap_or_default();
    let members: Vec<usize> = scc.iter().map(|n| graph[*n]).collect();
    // Walk the cycle from its first member (in file order) to name it in order.
    let start = members.iter().copied().min().unwrap_or(0);
    let mut path = vec![start];
    let mut current = start;
    while path.len() <= members.len() {
        let next = experiment.nodes[current]
            .inputs
            .iter()
            .flat_map(|i| i.nodes.iter().copied())
            .find(|p| members.contains(p) && (!path.contains(p) || *p == start));
        match next {
            Some(n) if n == start => {
                path.push(n);
                break;
            }
            Some(n) => {
                path.push(n);
                current = n;
            }
            None => break,
        }
    }
    let names: Vec<String> = path.iter().rev().map(|&i| experiment.nodes[i].id.0.clone()).collect();
    let node = &experiment.nodes[start];
    let span = node.inputs.iter().find(|i| i.nodes.iter().any(|p| members.contains(p))).map_or(node.span, |i| i.span);
    experiment
        .error(span, format!("dependency cycle: {}", names.join(" → ")))
        .key(format!("nodes.{}.input", node.decl))
        .hint("a node cannot depend, directly or through others, on its own output")
}
