//! Choosing among the runs of a sweep: per group of axis values, the value
//! of one axis (a learning rate) whose runs reach the lowest metric, with
//! its margin over the runner-up and a flag where it sits at the edge of
//! the grid. Pure: the `select` node kind reads the runs and copies the
//! winners (`crate::nodes::select`); the report draws the choice.

use super::compare::mean_and_sd;
use crate::settings::Value;
use crate::train::Variant;

/// What a `select` minimises.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// The validation loss after the last step (a cosine run delivers its
    /// loss only at its end).
    FinalValLoss,
    /// The lowest validation loss of any evaluation.
    MinValLoss,
}

impl Metric {
    /// Its name in sentences.
    pub fn describe(self) -> &'static str {
        match self {
            Metric::FinalValLoss => "final validation loss",
            Metric::MinValLoss => "lowest validation loss",
        }
    }
}

/// Which end of its grid a winner sits at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Edge {
    /// The smallest value tried.
    Smallest,
    /// The largest value tried.
    Largest,
}

/// One run of a candidate.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CandidateRun {
    /// Its node id.
    pub node: String,
    /// Its values of the replicate axes.
    pub replicate: Vec<(String, Value)>,
    /// Its metric; `None` where it diverged.
    pub metric: Option<f64>,
}

/// One value of the `over` axis within a group.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Candidate {
    /// The value.
    pub value: Value,
    /// The mean metric over its runs; `None` where any of them diverged.
    pub metric: Option<f64>,
    /// The sample standard deviation over its runs (two or more).
    pub spread: Option<f64>,
    /// Its runs.
    pub runs: Vec<CandidateRun>,
}

/// One group and what won it.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Group {
    /// Its `group_by` values, written `variant=doped, size=s2`.
    pub label: String,
    /// The same values.
    pub axes: Vec<(String, Value)>,
    /// The model variant its runs train (the fit's family).
    pub variant: Variant,
    /// Trainable non-embedding parameters of its first run.
    pub trainable: i64,
    /// Tokens its first run trained on.
    pub tokens: u64,
    /// Each value tried, in the grid's order (numeric values ascending).
    pub candidates: Vec<Candidate>,
    /// The index of the winner among `candidates`.
    pub chosen: usize,
    /// The group whose choice this one follows (`follow:`), if another.
    pub followed: Option<String>,
    /// How much worse the runner-up's metric is (nats); `None` with one
    /// value, or where every other value diverged.
    pub margin: Option<f64>,
    /// The winner is at this end of a grid of two or more values.
    pub edge: Option<Edge>,
}

impl Group {
    /// The winning candidate.
    pub fn winner(&self) -> &Candidate {
        &self.candidates[self.chosen]
    }
}

/// A kept run: its node and its files' place in the artifact.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct KeptRun {
    /// Its node id.
    pub node: String,
    /// Its folder, relative to the artifact.
    pub dir: String,
}

/// `selection.json`.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Selection {
    /// The axis chosen over.
    pub over: String,
    /// The group axes.
    pub group_by: Vec<String>,
    /// The replicate axes.
    pub replicates: Vec<String>,
    /// What was minimised.
    pub metric: Metric,
    /// `follow:` as (axis, value).
    pub follow: Option<(String, String)>,
    /// Every group, in the order their first runs are declared.
    pub groups: Vec<Group>,
    /// The runs handed on.
    pub kept: Vec<KeptRun>,
}

/// How runs form groups: by the `group_by` axes' values; within a group,
/// by the value of `over`, averaged over the `replicates` axes.
#[derive(Clone, Debug, PartialEq)]
pub struct Axes {
    /// The axis chosen over.
    pub over: String,
    /// The axes whose values form a group.
    pub group_by: Vec<String>,
    /// The axes whose runs repeat one setting.
    pub replicates: Vec<String>,
    /// (axis, value): each group takes the value its counterpart with this
    /// value chose.
    pub follow: Option<(String, String)>,
}

/// One finished run of the sweep.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// Its node id.
    pub id: String,
    /// Its sweep values.
    pub matrix: Vec<(String, Value)>,
    /// Its model variant.
    pub variant: Variant,
    /// Its trainable non-embedding parameters.
    pub trainable: i64,
    /// Tokens it trained on.
    pub tokens: u64,
    /// Its metric; `None` where it diverged.
    pub metric: Option<f64>,
}

/// The value of `axis` among a trial's sweep values.
fn axis_value<'a>(trial: &'a Trial, axis: &str) -> Result<&'a Value, String> {
    trial
        .matrix
        .iter()
        .find(|(a, _)| a == axis)
        .map(|(_, v)| v)
        .ok_or_else(|| format!("`{}` has no sweep axis `{axis}`", trial.id))
}

/// `variant=doped, size=s2`.
fn label(values: &[(String, Value)]) -> String {
    let parts: Vec<String> = values.iter().map(|(a, v)| format!("{a}={v}")).collect();
    parts.join(", ")
}

/// The indices of the candidates that did not diverge, best first.
fn ranking(candidates: &[Candidate]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..candidates.len()).filter(|&i| candidates[i].metric.is_some()).collect();
    order.sort_by(|&a, &b| {
        candidates[a].metric.unwrap_or(f64::INFINITY).total_cmp(&candidates[b].metric.unwrap_or(f64::INFINITY))
    });
    order
}

/// Groups the trials and picks each group's winner (before `follow:`);
/// an error names a group whose every run diverged.
pub fn choose(axes: &Axes, runs: Vec<Trial>) -> Result<Vec<Group>, String> {
    // Groups in first-run order; candidates in first-run order until sorted.
    let mut groups: Vec<(Vec<(String, Value)>, Vec<(Value, Vec<Trial>)>)> = Vec::new();
    for run in runs {
        let key: Vec<(String, Value)> = axes
            .group_by
            .iter()
            .map(|a| Ok((a.clone(), axis_value(&run, a)?.clone())))
            .collect::<Result<_, String>>()?;
        let value = axis_value(&run, &axes.over)?.clone();
        let at = match groups.iter().position(|(k, _)| *k == key) {
            Some(at) => at,
            None => {
                groups.push((key, Vec::new()));
                groups.len() - 1
            }
        };
        let candidates = &mut groups[at].1;
        match candidates.iter_mut().find(|(v, _)| *v == value) {
            Some((_, reads)) => reads.push(run),
            None => candidates.push((value, vec![run])),
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for (key, mut candidates) in groups {
        if candidates.iter().all(|(v, _)| v.as_f64().is_some()) {
            candidates.sort_by(|a, b| a.0.as_f64().unwrap_or(0.0).total_cmp(&b.0.as_f64().unwrap_or(0.0)));
        }
        let label = label(&key);
        let first = &candidates[0].1[0];
        let (variant, trainable, tokens) = (first.variant, first.trainable, first.tokens);
        let mut scored = Vec::with_capacity(candidates.len());
        for (value, reads) in candidates {
            let metrics: Option<Vec<f64>> = reads.iter().map(|r| r.metric).collect();
            let (metric, spread) = match &metrics {
                Some(m) => {
                    let (mean, spread) = mean_and_sd(m);
                    (Some(mean), spread)
                }
                None => (None, None),
            };
            let runs = reads
                .iter()
                .map(|r| {
                    let replicate = axes
                        .replicates
                        .iter()
                        .map(|a| Ok((a.clone(), axis_value(r, a)?.clone())))
                        .collect::<Result<_, String>>()?;
                    Ok(CandidateRun { node: r.id.clone(), replicate, metric: r.metric })
                })
                .collect::<Result<_, String>>()?;
            scored.push(Candidate { value, metric, spread, runs });
        }
        let order = ranking(&scored);
        let Some(&chosen) = order.first() else {
            let tried: Vec<String> = scored.iter().map(|c| c.value.to_string()).collect();
            return Err(format!(
                "group {label}: every run diverged ({} {}): try smaller values",
                axes.over,
                tried.join(", ")
            ));
        };
        let margin = order.get(1).and_then(|&i| Some(scored[i].metric? - scored[chosen].metric?));
        let edge = match chosen {
            _ if scored.len() < 2 => None,
            0 => Some(Edge::Smallest),
            c if c == scored.len() - 1 => Some(Edge::Largest),
            _ => None,
        };
        out.push(Group {
            label,
            axes: key,
            variant,
            trainable,
            tokens,
            candidates: scored,
            chosen,
            followed: None,
            margin,
            edge,
        });
    }
    Ok(out)
}

/// Makes each group take the value its counterpart with `axis = value`
/// chose (`follow:`); an error names a group that cannot.
pub fn follow(groups: &mut [Group], (axis, value): &(String, String), over: &str) -> Result<(), String> {
    let leaders: Vec<(Vec<(String, Value)>, Value, String)> = groups
        .iter()
        .filter(|g| g.axes.iter().any(|(a, v)| a == axis && v.to_string() == *value))
        .map(|g| (g.axes.clone(), g.winner().value.clone(), g.label.clone()))
        .collect();
    for g in groups.iter_mut() {
        if g.axes.iter().any(|(a, v)| a == axis && v.to_string() == *value) {
            continue;
        }
        let counterpart = |axes: &[(String, Value)]| {
            axes.iter()
                .zip(&g.axes)
                .all(|((a, v), (_, mine))| if a == axis { v.to_string() == *value } else { v == mine })
        };
        let Some((_, chosen, leader)) = leaders.iter().find(|(axes, _, _)| counterpart(axes)) else {
            return Err(format!("group {}: no group with {axis} = {value} and its other values to follow", g.label));
        };
        let Some(at) = g.candidates.iter().position(|c| c.value == *chosen) else {
            return Err(format!(
                "group {}: no run at {over} = {chosen}, the value {leader} chose: add it to the grid",
                g.label
            ));
        };
        if g.candidates[at].metric.is_none() {
            return Err(format!("group {}: its run at {over} = {chosen} (the value {leader} chose) diverged", g.label));
        }
        g.chosen = at;
        g.followed = Some(leader.clone());
        g.edge = None;
        g.margin = None;
    }
    Ok(())
}

/// One line per group: the winner, its metric and its lead.
pub fn describe(g: &Group, over: &str) -> String {
    let w = g.winner();
    let metric = w.metric.map_or("diverged".into(), |m| format!("{m:.4}"));
    let spread = match (w.spread, w.runs.len()) {
        (Some(s), n) => format!(" ± {s:.4} over {n} runs"),
        _ => String::new(),
    };
    let how = match (&g.followed, g.margin, g.candidates.len()) {
        (Some(leader), _, _) => format!(", as {leader} chose"),
        (None, _, 1) => ", the only value tried".into(),
        (None, Some(m), _) => {
            let runner = ranking(&g.candidates).get(1).map(|&i| g.candidates[i].value.to_string()).unwrap_or_default();
            format!(", {m:.4} better than {over} {runner}")
        }
        (None, None, _) => ", every other value diverged".into(),
    };
    let edge = match g.edge {
        Some(Edge::Smallest) => "  [smallest tried]",
        Some(Edge::Largest) => "  [largest tried]",
        None => "",
    };
    format!("{}: {over} {} wins, {metric}{spread}{how}{edge}", g.label, w.value)
}

/// What to do about a winner at the edge of its grid: "lr 0.02 is the
/// largest tried: extend the grid" (the report's flag).
pub fn edge_note(g: &Group, over: &str) -> Option<String> {
    let end = match g.edge? {
        Edge::Smallest => "smallest",
        Edge::Largest => "largest",
    };
    Some(format!("{over} {} is the {end} tried: extend the grid", g.winner().value))
}

/// The warning `run` prints for a winner at the edge of its grid.
pub fn edge_warning(g: &Group, over: &str) -> Option<String> {
    Some(format!("{}: {}", g.label, edge_note(g, over)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn axes(group_by: &[&str], replicates: &[&str], follow: Option<(&str, &str)>) -> Axes {
        Axes {
            over: "lr".into(),
            group_by: group_by.iter().map(|s| s.to_string()).collect(),
            replicates: replicates.iter().map(|s| s.to_string()).collect(),
            follow: follow.map(|(a, v)| (a.to_string(), v.to_string())),
        }
    }

    /// A run of `variant` at `width` and `lr` (and `seed`) ending at `loss` (NaN: diverged).
    fn run(variant: &str, width: i64, lr: f64, seed: i64, loss: f64) -> Trial {
        let matrix = vec![
            ("variant".to_string(), Value::Str(variant.into())),
            ("width".to_string(), Value::Int(width)),
            ("seed".to_string(), Value::Int(seed)),
            ("lr".to_string(), Value::Float(lr)),
        ];
        let id = format!("runs[variant={variant},width={width},seed={seed},lr={lr}]");
        Trial {
            id,
            matrix,
            variant: Variant::from_name(variant).unwrap_or(Variant::Baseline),
            trainable: width * 100,
            tokens: 1000,
            metric: loss.is_finite().then_some(loss),
        }
    }

    #[test]
    fn each_group_keeps_its_best_value_and_flags_a_winner_at_the_edge() {
        let runs = vec![
            run("baseline", 32, 0.02, 0, 3.9),
            run("baseline", 32, 0.005, 0, 4.0),
            run("baseline", 32, 0.01, 0, 3.8),
            run("doped", 32, 0.005, 0, 4.2),
            run("doped", 32, 0.01, 0, 4.1),
            run("doped", 32, 0.02, 0, 4.05),
        ];
        let groups = choose(&axes(&["variant", "width"], &["seed"], None), runs).unwrap();
        assert_eq!(groups.len(), 2);
        let base = &groups[0];
        assert_eq!(base.label, "variant=baseline, width=32");
        let values: Vec<f64> = base.candidates.iter().filter_map(|c| c.value.as_f64()).collect();
        assert_eq!(values, [0.005, 0.01, 0.02], "numeric grids are ordered");
        assert_eq!(base.winner().value, Value::Float(0.01));
        assert!((base.margin.unwrap() - 0.1).abs() < 1e-12, "{:?}", base.margin);
        assert_eq!(base.edge, None);
        assert_eq!(base.winner().runs[0].node, "runs[variant=baseline,width=32,seed=0,lr=0.01]");
        let doped = &groups[1];
        assert_eq!((doped.winner().value.clone(), doped.edge), (Value::Float(0.02), Some(Edge::Largest)));
        assert_eq!(
            edge_warning(doped, "lr").unwrap(),
            "variant=doped, width=32: lr 0.02 is the largest tried: extend the grid"
        );
        assert!(describe(doped, "lr").contains("lr 0.02 wins, 4.0500, 0.0500 better than lr 0.01  [largest tried]"));
    }

    #[test]
    fn replicates_are_averaged_and_travel_with_their_winner() {
        let runs = vec![
            run("baseline", 32, 0.01, 0, 3.80),
            run("baseline", 32, 0.01, 1, 3.90),
            run("baseline", 32, 0.02, 0, 3.84),
            run("baseline", 32, 0.02, 1, 3.84),
        ];
        let groups = choose(&axes(&["variant", "width"], &["seed"], None), runs).unwrap();
        let g = &groups[0];
        // 0.01's mean is 3.85, 0.02's 3.84: the single best run (3.80) does not decide.
        assert_eq!(g.winner().value, Value::Float(0.02));
        assert_eq!(g.winner().runs.len(), 2, "both seeds are kept");
        let spread = groups[0].candidates[0].spread.unwrap();
        assert!((spread - (0.005f64).sqrt()).abs() < 1e-9, "{spread}");
        assert_eq!(g.winner().runs[1].replicate, vec![("seed".to_string(), Value::Int(1))]);
    }

    #[test]
    fn a_group_whose_every_run_diverged_is_an_error_naming_it_but_a_diverged_neighbour_is_not() {
        let runs = vec![
            run("baseline", 32, 0.01, 0, 3.8),
            run("baseline", 32, 0.02, 0, f64::NAN),
            run("fastfood", 48, 0.01, 0, f64::NAN),
            run("fastfood", 48, 0.02, 0, f64::INFINITY),
        ];
        let err = choose(&axes(&["variant", "width"], &[], None), runs).unwrap_err();
        assert_eq!(err, "group variant=fastfood, width=48: every run diverged (lr 0.01, 0.02): try smaller values");
        let groups = choose(
            &axes(&["variant", "width"], &[], None),
            vec![run("baseline", 32, 0.01, 0, 3.8), run("baseline", 32, 0.02, 0, f64::NAN)],
        )
        .unwrap();
        assert_eq!((groups[0].chosen, groups[0].margin), (0, None));
        assert_eq!(groups[0].edge, Some(Edge::Smallest), "the edge of the grid tried, diverged values included");
    }

    #[test]
    fn following_takes_the_counterparts_value_or_says_which_point_is_missing() {
        let grid = || {
            vec![
                run("baseline", 32, 0.005, 0, 4.0),
                run("baseline", 32, 0.01, 0, 3.8),
                run("doped", 32, 0.005, 0, 4.3),
                run("doped", 32, 0.01, 0, 4.2),
                run("doped", 32, 0.02, 0, 4.1),
            ]
        };
        let a = axes(&["variant", "width"], &[], Some(("variant", "baseline")));
        let mut groups = choose(&a, grid()).unwrap();
        follow(&mut groups, a.follow.as_ref().unwrap(), "lr").unwrap();
        let doped = &groups[1];
        assert_eq!(doped.winner().value, Value::Float(0.01), "the baseline's rate, not doped's own best");
        assert_eq!(doped.followed.as_deref(), Some("variant=baseline, width=32"));
        assert_eq!((doped.edge, doped.margin), (None, None));

        let mut runs = grid();
        runs.remove(3); // doped has no run at the baseline's 0.01
        let mut groups = choose(&a, runs).unwrap();
        let err = follow(&mut groups, a.follow.as_ref().unwrap(), "lr").unwrap_err();
        assert_eq!(
            err,
            "group variant=doped, width=32: no run at lr = 0.01, the value variant=baseline, width=32 chose: add it to the grid"
        );
    }
}
