//! Text renderings of the graph and of single nodes.

use std::collections::BTreeSet;
use std::fmt::Write;

use scalemake::cache::Cache;
use scalemake::exec::{Freshness, NodeState};
use scalemake::graph::Plan;

use super::DagFormat;

/// The fill of a node's state in Graphviz and Mermaid renderings.
fn colour(state: NodeState) -> &'static str {
    match state {
        NodeState::Fresh => "palegreen",
        NodeState::Stale => "khaki",
        NodeState::Missing => "lightsalmon",
        NodeState::Failed => "tomato",
        NodeState::Queued => "lightblue",
    }
}

pub use scalemake::units::human_bytes;

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dag(
    plan: &Plan,
    selected: &BTreeSet<usize>,
    states: &[NodeState],
    survey: &[Freshness],
    format: DagFormat,
) -> String {
    let nodes = &plan.experiment.nodes;
    let order: Vec<usize> = plan.topo_order().iter().copied().filter(|i| selected.contains(i)).collect();
    // Helpers (order-only inputs) are drawn as make writes them, after a `|`, and dashed.
    let edges: Vec<(usize, usize, bool)> = order
        .iter()
        .flat_map(|&i| {
            let helpers = plan.order_only_inputs_of(i).into_iter().map(move |p| (p, i, true));
            plan.key_inputs_of(i).into_iter().map(move |p| (p, i, false)).chain(helpers)
        })
        .collect();
    let mut out = String::new();
    match format {
        DagFormat::Text => {
            for &i in &order {
                let names =
                    |ids: Vec<usize>| ids.into_iter().map(|p| nodes[p].id.0.as_str()).collect::<Vec<_>>().join(", ");
                let (inputs, helpers) = (names(plan.key_inputs_of(i)), names(plan.order_only_inputs_of(i)));
                let _ = write!(out, "[{:<7}] {} ({})", states[i].label(), nodes[i].id, nodes[i].kind.name());
                match (inputs.is_empty(), helpers.is_empty()) {
                    (true, true) => {}
                    (false, true) => {
                        let _ = write!(out, " <- {inputs}");
                    }
                    (true, false) => {
                        let _ = write!(out, " <- | {helpers}");
                    }
                    (false, false) => {
                        let _ = write!(out, " <- {inputs} | {helpers}");
                    }
                }
                out.push('\n');
            }
        }
        DagFormat::Dot => {
            let _ = writeln!(
                out,
                "digraph \"{}\" {{\n  rankdir=LR;\n  node [shape=box, style=filled];",
                escape(&plan.experiment.name)
            );
            for &i in &order {
                let _ = writeln!(
                    out,
                    "  n{i} [label=\"{}\\n{}\", fillcolor={}];",
                    escape(&nodes[i].id.0),
                    states[i].label(),
                    colour(states[i])
                );
            }
            for (a, b, helper) in &edges {
                let style = if *helper { " [style=dashed]" } else { "" };
                let _ = writeln!(out, "  n{a} -> n{b}{style};");
            }
            out.push_str("}\n");
        }
        DagFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for &i in &order {
                let _ = writeln!(
                    out,
                    "  n{i}[\"{} ({})\"]:::{}",
                    nodes[i].id.0.replace('"', "#quot;"),
                    states[i].label(),
                    states[i].label()
                );
            }
            for (a, b, helper) in &edges {
                let arrow = if *helper { "-.->" } else { "-->" };
                let _ = writeln!(out, "  n{a} {arrow} n{b}");
            }
            for s in NodeState::ALL {
                let _ = writeln!(out, "  classDef {} fill:{}", s.label(), colour(s));
            }
        }
        DagFormat::Json => {
            let json_nodes: Vec<serde_json::Value> = order
                .iter()
                .map(|&i| {
                    let (key, reasons) = match &survey[i] {
                        Freshness::Fresh { key, .. } => (Some(key.hex()), vec![]),
                        Freshness::Stale { key, reasons } => {
                            (key.map(|k| k.hex()), reasons.iter().map(ToString::to_string).collect())
                        }
                        Freshness::Broken { message } => (None, vec![message.clone()]),
                    };
                    serde_json::json!({
                        "id": nodes[i].id.0,
                        "kind": nodes[i].kind.name(),
                        "state": states[i].label(),
                        "key": key,
                        "reasons": reasons,
                        "inputs": plan.key_inputs_of(i).into_iter().map(|p| nodes[p].id.0.clone()).collect::<Vec<_>>(),
                        "helpers": plan.order_only_inputs_of(i).into_iter().map(|p| nodes[p].id.0.clone()).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let doc = serde_json::json!({ "experiment": plan.experiment.name, "nodes": json_nodes });
            out = serde_json::to_string_pretty(&doc).unwrap_or_default();
            out.push('\n');
        }
    }
    out
}

/// `explain`: why node `i` must rebuild, or, built, what it recorded of its
/// decisions (summary lines and warnings).
pub fn explain(plan: &Plan, i: usize, cache: &Cache, survey: &[Freshness]) -> String {
    let node = &plan.experiment.nodes[i];
    let mut out = String::new();
    match &survey[i] {
        Freshness::Fresh { key, .. } => match cache.manifest(key).ok().flatten() {
            Some(manifest) => {
                let _ = writeln!(out, "{} is built ({} {}):", node.id, node.kind.name(), key.short());
                for line in &manifest.summary {
                    let _ = writeln!(out, "  {line}");
                }
                for line in &manifest.warnings {
                    let _ = writeln!(out, "  warning: {line}");
                }
            }
            None => {
                let _ = writeln!(out, "{} is built, but its manifest cannot be read", node.id);
            }
        },
        Freshness::Stale { reasons, .. } => {
            let _ = writeln!(out, "{} must be built:", node.id);
            for r in reasons {
                let _ = writeln!(out, "  because {r}");
            }
        }
        Freshness::Broken { message } => {
            let _ = writeln!(out, "{} cannot be built: {message}", node.id);
        }
    }
    out
}

/// `show`: everything about node `i`.
pub fn show(plan: &Plan, i: usize, cache: &Cache, survey: &[Freshness], state: NodeState) -> String {
    let node = &plan.experiment.nodes[i];
    let mut out = String::new();
    let src = &plan.experiment.source;
    let _ = writeln!(out, "node      {}", node.id);
    let _ = writeln!(out, "kind      {} (version {})", node.kind.name(), node.kind.version());
    let _ = writeln!(out, "declared  {}:{}:{}", src.path.display(), node.span.line, node.span.col);
    let _ = writeln!(out, "resources cpu={} gpu={}", node.resources.cpu, node.resources.gpu);
    let key = match &survey[i] {
        Freshness::Fresh { key, .. } => Some(*key),
        Freshness::Stale { key, .. } => *key,
        Freshness::Broken { .. } => None,
    };
    let _ = writeln!(out, "state     {}", state.label());
    match &survey[i] {
        Freshness::Fresh { .. } => {}
        Freshness::Stale { reasons, .. } => {
            for r in reasons {
                let _ = writeln!(out, "  because {r}");
            }
        }
        Freshness::Broken { message } => {
            let _ = writeln!(out, "  because {message}");
        }
    }
    let _ = writeln!(out, "key       {}", key.map_or("(unknown until inputs are built)".to_string(), |k| k.hex()));
    if !node.inputs.is_empty() {
        out.push_str("inputs\n");
        for input in &node.inputs {
            let names: Vec<String> = input
                .nodes
                .iter()
                .map(|&p| format!("{} [{}]", plan.experiment.nodes[p].id, short_state(&survey[p])))
                .collect();
            let _ = writeln!(out, "  {} -> {}", input.name, names.join(", "));
        }
    }
    if let Some(manifest) = key.and_then(|k| cache.manifest(&k).ok().flatten()) {
        let _ = writeln!(out, "artifact  {}", cache.artifact_dir(&manifest.key).display());
        let _ = writeln!(out, "  digest  {}", manifest.artifact);
        let _ = writeln!(out, "  files   {} ({})", manifest.outputs.len(), human_bytes(manifest.bytes));
        let _ = writeln!(
            out,
            "  built   in {:.2}s on {} by scalemake {}",
            manifest.seconds, manifest.host, manifest.tool_version
        );
        for (name, value) in &manifest.metrics {
            let _ = writeln!(out, "  metric  {name} = {value}");
        }
        for line in &manifest.summary {
            let _ = writeln!(out, "  {line}");
        }
        for line in &manifest.warnings {
            let _ = writeln!(out, "  warning: {line}");
        }
    }
    let unhashed: Vec<&str> = node.kind.schema().fields.iter().filter(|f| !f.hashed).map(|f| f.name).collect();
    out.push_str("params (defaults filled in)\n");
    let yaml = serde_yaml::to_string(&node.params).unwrap_or_default();
    for line in yaml.lines() {
        let _ = writeln!(out, "  {line}");
    }
    if !unhashed.is_empty() {
        let _ = writeln!(out, "  (not part of the key: {})", unhashed.join(", "));
    }
    out
}

fn short_state(f: &Freshness) -> &'static str {
    match f {
        Freshness::Fresh { .. } => "fresh",
        Freshness::Stale { .. } => "stale",
        Freshness::Broken { .. } => "failed",
    }
}
