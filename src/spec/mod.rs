//! Experiment files: YAML → validated, typed, sweep-expanded node specs.
//!
//! ```yaml
//! name: demo
//! defaults: { seed: 0 }            # applied to every node whose kind has the key
//! nodes:
//!   words: { kind: command, cmd: "seq 100 > $OUT/words.txt", outputs: [words.txt] }
//!   count:
//!     kind: command
//!     input: words                 # another node (or family, or `train[model=a]`)
//!     matrix: { n: [1, 2] }        # → count[n=1], count[n=2]
//!     cmd: "head -n ${n} $IN/words.txt > $OUT/head.txt"
//! ```
//!
//! Invariants of a loaded [`Experiment`]: every node's params passed its
//! kind's [`Schema`] (defaults filled in, no NaN), every input resolves to at
//! least one node, instance ids are unique. Cycles are found by
//! [`crate::graph::Plan`]. All errors carry file, line and column.

pub mod isoflop;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use isoflop::IsoflopPoint;

pub use crate::nodes::NodeId;
use crate::nodes::{NodeKind, Registry, Resources, SweptNode};
use crate::settings::yaml::{Key, Node, Span, Yaml};
pub use crate::settings::{
    closest, yaml, Field, FieldType, LoadError, Presence, Schema, SourceFile, SpecError, SpecErrors, Value,
};

/// A loaded, validated experiment.
pub struct Experiment {
    /// `name:` from the file, or the file stem.
    pub name: String,
    /// The file and its text (for later errors that point into it).
    pub source: Arc<SourceFile>,
    /// Node instances in file order (matrix instances in sweep order).
    pub nodes: Vec<NodeSpec>,
    lookup: Lookup,
}

/// Node indices by instance id and by declaration, so that resolving a
/// reference costs O(1) rather than a scan (10,000-node studies exist).
struct Lookup {
    by_id: HashMap<String, usize>,
    by_decl: HashMap<String, Vec<usize>>,
}

impl Lookup {
    fn new<S: AsRef<NodeSpec>>(nodes: &[S]) -> Self {
        let mut by_id = HashMap::with_capacity(nodes.len());
        let mut by_decl: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, n) in nodes.iter().map(AsRef::as_ref).enumerate() {
            by_id.entry(n.id.0.clone()).or_insert(i);
            by_decl.entry(n.decl.clone()).or_default().push(i);
        }
        Lookup { by_id, by_decl }
    }
}

/// One node instance.
pub struct NodeSpec {
    /// Unique instance name.
    pub id: NodeId,
    /// The declaration it came from (`train` for `train[model=small]`).
    pub decl: String,
    /// Its kind.
    pub kind: Arc<dyn NodeKind>,
    /// Validated params with defaults filled in.
    pub params: Value,
    /// This instance's sweep values, in declaration order.
    pub matrix: Vec<(String, Value)>,
    /// Its budget and shape, for an instance of an `isoflop:` sweep.
    pub isoflop: Option<IsoflopPoint>,
    /// Upstream nodes.
    pub inputs: Vec<InputSpec>,
    /// Slots the executor must reserve to run it.
    pub resources: Resources,
    /// Where the declaration starts.
    pub span: Span,
}

impl AsRef<NodeSpec> for NodeSpec {
    fn as_ref(&self) -> &NodeSpec {
        self
    }
}

/// One `input:` reference, resolved.
#[derive(Clone, Debug)]
pub struct InputSpec {
    /// The reference as written (after sweep substitution): `train[model=a]`.
    pub name: String,
    /// Indices into [`Experiment::nodes`], in file order.
    pub nodes: Vec<usize>,
    /// Where the reference is written.
    pub span: Span,
    /// Built first and read, but outside the node's key: a helper
    /// ([`crate::nodes::NodeKind::helper`]), built only when the node builds.
    pub order_only: bool,
}

impl Experiment {
    /// An error pointing into this experiment's file.
    pub fn error(&self, span: Span, message: impl Into<String>) -> SpecError {
        SpecError::new(&self.source, span, message)
    }

    /// Indices of the nodes a reference such as `train`, `train[model=a]` or
    /// an exact instance id selects. `Err` carries a message and a hint.
    pub fn select(&self, reference: &str) -> Result<Vec<usize>, (String, Option<String>)> {
        select(&self.nodes, &self.lookup, reference)
    }
}

/// Keys allowed on every node besides its kind's params.
const NODE_KEYS: [&str; 6] = ["kind", "input", "matrix", "isoflop", "from", "resources"];
const TOP_KEYS: [&str; 3] = ["name", "defaults", "nodes"];
/// Most node instances an experiment may declare, sweeps expanded (10,000-node
/// studies exist; a product of long lists that reaches millions is a typo,
/// and would exhaust memory before any message).
const MAX_INSTANCES: usize = 1_000_000;

/// Reads, parses and validates an experiment file.
pub fn load(path: &Path, registry: &Registry) -> Result<Experiment, LoadError> {
    let bytes = std::fs::read(path).map_err(|e| LoadError::io(path, e))?;
    let text = match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            let valid = e.utf8_error().valid_up_to();
            let prefix = String::from_utf8_lossy(&e.as_bytes()[..valid]).into_owned();
            let starts = yaml::line_starts(&prefix);
            let line = starts.len();
            let col = prefix[starts[line - 1]..].chars().count() + 1;
            let source = Arc::new(SourceFile { path: path.to_path_buf(), text: prefix });
            let span = Span { line, col, offset: valid, len: 0 };
            return Err(SpecError::new(&source, span, "file is not valid UTF-8")
                .hint("save the experiment file as UTF-8")
                .into());
        }
    };
    let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    load_str(path.to_path_buf(), text, name, registry)
}

/// Parses and validates experiment text (`path` is used in messages only).
pub fn load_str(
    path: PathBuf,
    text: String,
    default_name: String,
    registry: &Registry,
) -> Result<Experiment, LoadError> {
    let source = Arc::new(SourceFile { path, text });
    let root = yaml::parse(&source.text)
        .map_err(|e| SpecError::new(&source, e.span, format!("invalid YAML: {}", e.message)))?;
    Loader {
        source: &source,
        registry,
        errors: Vec::new(),
        failed_decls: HashSet::new(),
        checked_decls: HashSet::new(),
        instances: 0,
    }
    .load(&root, default_name)
}

struct Loader<'a> {
    source: &'a Arc<SourceFile>,
    registry: &'a Registry,
    errors: Vec<SpecError>,
    /// Declarations that produced errors (their dependents' "no such node" would only echo them).
    failed_decls: HashSet<String>,
    /// Declarations whose inputs [`NodeKind::check_inputs`] has seen (once per sweep).
    checked_decls: HashSet<String>,
    /// Instances declared so far (at most [`MAX_INSTANCES`]).
    instances: usize,
}

/// A declaration before references are resolved.
struct Instance {
    spec: NodeSpec,
    raw_inputs: Vec<(String, Span)>,
    /// Its params as written (after sweep substitution): where an input
    /// check's refusal points.
    own: Node,
}

impl AsRef<NodeSpec> for Instance {
    fn as_ref(&self) -> &NodeSpec {
        &self.spec
    }
}

impl Loader<'_> {
    fn err(&self, span: Span, message: impl Into<String>) -> SpecError {
        SpecError::new(self.source, span, message)
    }

    fn load(mut self, root: &Node, default_name: String) -> Result<Experiment, LoadError> {
        // The file stem can be anything a file name can; the cache's paths cannot.
        let default_name: String = default_name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "_-.".contains(c) { c } else { '_' })
            .collect();
        let default_name = if is_safe_name(&default_name) { default_name } else { format!("_{default_name}") };
        let Yaml::Map(top) = &root.value else {
            let found = root.value.type_name();
            return Err(self
                .err(root.span, format!("an experiment file is a mapping with `nodes:`, found {found}"))
                .into());
        };
        let mut name = default_name;
        let mut defaults: &[(Key, Node)] = &[];
        let mut nodes = None;
        for (key, value) in top {
            match (key.name.as_str(), &value.value) {
                ("name", Yaml::Str(s)) if is_safe_name(s) => name = s.clone(),
                ("name", Yaml::Str(s)) => {
                    let msg = format!(
                        "experiment name `{s}` may only use letters, digits, `_`, `-` and `.`, and not start with `.`"
                    );
                    self.errors.push(
                        self.err(value.span, msg)
                            .key("name")
                            .hint("it names the experiment's files in the cache (`cache/state/<name>.log`)"),
                    );
                }
                ("defaults", Yaml::Map(m)) => defaults = m,
                ("nodes", Yaml::Map(m)) => nodes = Some(m),
                ("name" | "defaults" | "nodes", other) => {
                    let expected = if key.name == "name" { "a string" } else { "a mapping" };
                    self.errors.push(
                        self.err(value.span, format!("expected {expected}, found {}", other.type_name()))
                            .key(&key.name),
                    );
                }
                (other, _) => self.errors.push(
                    self.err(key.span, format!("unknown top-level key `{other}`"))
                        .key(other)
                        .did_you_mean(other, TOP_KEYS),
                ),
            }
        }
        let Some(decls) = nodes else {
            if self.errors.is_empty() {
                self.errors
                    .push(self.err(root.span, "missing `nodes:` (the mapping of node declarations)").key("nodes"));
            }
            return Err(LoadError::Spec(SpecErrors(self.errors)));
        };

        let mut instances = Vec::new();
        for (key, decl) in decls {
            let before = self.errors.len();
            let declared = self.declaration(key, decl, defaults, &instances);
            instances.extend(declared);
            if self.errors.len() > before {
                self.failed_decls.insert(key.name.clone());
            }
        }
        self.check_defaults_are_used(defaults, decls);
        let mut nodes = self.resolve_inputs(instances);
        if self.errors.is_empty() {
            self.add_helpers(&mut nodes);
        }
        if self.errors.is_empty() {
            let lookup = Lookup::new(&nodes);
            Ok(Experiment { name, source: self.source.clone(), nodes, lookup })
        } else {
            // A sweep repeats one bad key in every instance: say it once.
            let mut seen = HashSet::new();
            self.errors.retain(|e| seen.insert((e.span, e.key.clone(), e.message.clone())));
            Err(LoadError::Spec(SpecErrors(self.errors)))
        }
    }

    /// Expands one declaration into its instances.
    fn declaration(&mut self, key: &Key, decl: &Node, defaults: &[(Key, Node)], above: &[Instance]) -> Vec<Instance> {
        let path = format!("nodes.{}", key.name);
        if key.name.is_empty() || !key.name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c)) {
            let msg = format!("node name `{}` may only use letters, digits, `_`, `-` and `.`", key.name);
            self.errors.push(self.err(key.span, msg).key(&path));
            return vec![];
        }
        let Yaml::Map(entries) = &decl.value else {
            let msg = format!("a node is a mapping with `kind:`, found {}", decl.value.type_name());
            // An empty value (`a:` and nothing) is marked where the next token starts: point at the name.
            let span = if matches!(decl.value, Yaml::Null) { key.span } else { decl.span };
            self.errors.push(self.err(span, msg).key(&path));
            return vec![];
        };
        let get = |name: &str| entries.iter().find(|(k, _)| k.name == name).map(|(_, v)| v);
        let Some(kind) = self.kind(get("kind"), decl.span, &path) else { return vec![] };
        let matrix = get("matrix").map_or(Some(vec![]), |m| self.matrix(m, &path));
        let Some(matrix) = matrix else { return vec![] };
        let isoflop = match get("isoflop") {
            Some(node) => match self.isoflop(node, entries, &path) {
                Some(isoflop) => Some(isoflop),
                None => return vec![],
            },
            None => None,
        };
        let from = get("from");
        if let (Some(from), Some(_)) = (from, &isoflop) {
            let e = self.err(from.span, "a declaration is either an `isoflop:` sweep or a branch (`from:`), not both");
            self.errors.push(e.key(format!("{path}.from")));
            return vec![];
        }
        let room = MAX_INSTANCES - self.instances;
        let per_combination = isoflop.as_ref().map_or(1, isoflop::Isoflop::count);
        match matrix
            .iter()
            .try_fold(per_combination, |n, (_, values)| n.checked_mul(values.len()).filter(|&n| n <= room))
        {
            Some(count) => self.instances += count,
            None => {
                let sizes: Vec<String> = matrix.iter().map(|(_, values)| values.len().to_string()).collect();
                let e = match get("matrix") {
                    Some(m) => self.err(
                        m.span,
                        format!(
                            "`matrix:` expands to {} instances: an experiment may have at most {MAX_INSTANCES} nodes",
                            sizes.join(" × ")
                        ),
                    ),
                    None => self.err(key.span, format!("an experiment may have at most {MAX_INSTANCES} nodes")),
                };
                self.errors.push(e.key(format!("{path}.matrix")));
                return vec![];
            }
        }

        // The kind's params: everything but the node-level keys, plus defaults.
        let mut params: Vec<(Key, Node)> =
            entries.iter().filter(|(k, _)| !NODE_KEYS.contains(&k.name.as_str())).cloned().collect();
        if isoflop.is_some() {
            // A stand-in until the sweep sets the budget's tokens (validation wants one).
            params.push((
                Key { name: "max_tokens".into(), span: key.span },
                Node { value: Yaml::Int(1), span: key.span },
            ));
        }
        // A branch inherits its source's params instead: defaults there would override them.
        for (dk, dv) in defaults.iter().filter(|_| from.is_none()) {
            if kind.schema().field(&dk.name).is_some() && !params.iter().any(|(k, _)| k.name == dk.name) {
                params.push((dk.clone(), dv.clone()));
            }
        }
        // Errors about the params as a whole (a missing key) point at the node's name.
        let params = Node { value: Yaml::Map(params), span: key.span };
        let inputs = get("input");

        // Built once: every combination's `from:` looks in the same instances.
        let sources = from.map(|_| Lookup::new(above));
        let mut out = Vec::new();
        for combo in combinations(&matrix) {
            let vars: HashMap<&str, &Node> = combo.iter().map(|(k, v)| (k.as_str(), *v)).collect();
            let before = self.errors.len();
            let mut params = self.substitute(&params, &vars, &path);
            let mut raw_inputs = inputs.map(|n| self.input_refs(n, &vars, &path)).unwrap_or_default();
            if self.errors.len() > before {
                continue;
            }
            let mut source = None;
            if let (Some(from), Some(sources)) = (from, &sources) {
                let Some(found) = self.branch_source(from, &vars, &kind, above, sources, &path) else { continue };
                let base = match kind.branch_base(&found.spec.params) {
                    Ok(base) => base,
                    Err(why) => {
                        self.errors.push(self.err(from.span, why).key(format!("{path}.from")));
                        continue;
                    }
                };
                params = overlay(to_yaml(&base, from.span), &params);
                if inputs.is_none() {
                    raw_inputs = found.raw_inputs.clone();
                }
                raw_inputs.push((found.spec.id.0.clone(), from.span));
                source = Some((found, from));
            }
            let own = params.clone();
            let Some(params) = kind.schema().validate(&params, &path, self.source, &mut self.errors) else { continue };
            if let Some((found, from)) = source {
                if let Err(refusal) = kind.check_branch(&params, &found.spec.params) {
                    // Point at the branch's own key when it wrote one, else at `from:`.
                    let span =
                        own.get_path(&refusal.param).filter(|n| n.span != from.span).map_or(from.span, |n| n.span);
                    let e = self.err(span, refusal.message).key(format!("{path}.{}", refusal.param));
                    self.errors.push(e.hint(refusal.hint));
                    continue;
                }
            }
            // A kind's default slots may depend on its params (`device: cuda` wants a GPU).
            let default_resources = kind.resources_default(&params);
            let resources = match get("resources") {
                Some(r) => match self.resources(r, default_resources, &path) {
                    Some(r) => r,
                    None => return vec![], // the same error for every instance: say it once
                },
                None => default_resources,
            };
            let matrix: Vec<(String, Value)> = combo.iter().map(|(k, v)| (k.clone(), scalar_value(v))).collect();
            let variants = match &isoflop {
                None => vec![(params, matrix, None)],
                Some(isoflop) => match isoflop.points(kind.as_ref(), &params) {
                    Ok(points) => points
                        .into_iter()
                        .map(|point| {
                            let params = point.params(&params);
                            let mut matrix = matrix.clone();
                            matrix.push(("budget".into(), Value::Float(point.budget)));
                            matrix.push(("size".into(), Value::Int(point.size as i64)));
                            (params, matrix, Some(point))
                        })
                        .collect(),
                    Err(refusals) => {
                        for r in refusals {
                            self.errors
                                .push(self.err(r.span, r.message).key(format!("{path}.isoflop.budgets")).hint(r.hint));
                        }
                        continue;
                    }
                },
            };
            for (params, matrix, point) in variants {
                let id = if matrix.is_empty() {
                    key.name.clone()
                } else {
                    let parts: Vec<String> = matrix.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    format!("{}[{}]", key.name, parts.join(","))
                };
                let spec = NodeSpec {
                    id: NodeId(id),
                    decl: key.name.clone(),
                    kind: kind.clone(),
                    params,
                    matrix,
                    isoflop: point,
                    inputs: vec![],
                    resources,
                    span: key.span,
                };
                out.push(Instance { spec, raw_inputs: raw_inputs.clone(), own: own.clone() });
            }
        }
        out
    }

    /// The one instance declared above (`lookup` indexes them) that a
    /// branch's `from:` names.
    fn branch_source<'i>(
        &mut self,
        from: &Node,
        vars: &HashMap<&str, &Node>,
        kind: &Arc<dyn NodeKind>,
        above: &'i [Instance],
        lookup: &Lookup,
        path: &str,
    ) -> Option<&'i Instance> {
        let key = format!("{path}.from");
        let Yaml::Str(text) = &from.value else {
            let msg = format!("`from:` names the node this one continues, found {}", from.value.type_name());
            self.errors.push(self.err(from.span, msg).key(key));
            return None;
        };
        let Substituted::Text(reference) = self.substitute_str(text, from.span, vars, &key) else { return None };
        let picked: Vec<&Instance> = match select(above, lookup, &reference) {
            Ok(indices) => indices.into_iter().map(|i| &above[i]).collect(),
            Err((message, hint)) => {
                let hint = hint.unwrap_or_else(|| "a branch's source is declared above it in the file".into());
                self.errors.push(self.err(from.span, format!("{message} above this branch")).key(key).hint(hint));
                return None;
            }
        };
        match picked.as_slice() {
            [one] if one.spec.kind.name() == kind.name() => Some(*one),
            [one] => {
                let msg = format!(
                    "`{}` is a `{}` node: a branch continues a node of its own kind (`{}`)",
                    one.spec.id,
                    one.spec.kind.name(),
                    kind.name()
                );
                self.errors.push(self.err(from.span, msg).key(key));
                None
            }
            many => {
                let names: Vec<&str> = many.iter().take(3).map(|i| i.spec.id.0.as_str()).collect();
                let msg = format!("`{reference}` selects {} nodes: a branch continues one", many.len());
                self.errors
                    .push(self.err(from.span, msg).key(key).hint(format!("name one, e.g. `{}`", names.join("`, `"))));
                None
            }
        }
    }

    /// Parses a declaration's `isoflop:`, refusing the params it would set.
    fn isoflop(&mut self, node: &Node, entries: &[(Key, Node)], path: &str) -> Option<isoflop::Isoflop> {
        let before = self.errors.len();
        for param in isoflop::SET_BY_SWEEP {
            let (top, nested) = match param.split_once('.') {
                Some((top, nested)) => (top, Some(nested)),
                None => (param, None),
            };
            let Some((k, v)) = entries.iter().find(|(k, _)| k.name == top) else { continue };
            let span = match (nested, &v.value) {
                (None, _) => Some(k.span),
                (Some(nested), Yaml::Map(inner)) => inner.iter().find(|(k, _)| k.name == nested).map(|(k, _)| k.span),
                _ => None,
            };
            if let Some(span) = span {
                self.errors.push(
                    self.err(span, format!("`{param}` is set by `isoflop:` for each budget and size"))
                        .key(format!("{path}.{param}"))
                        .hint("remove it: the sweep chooses each shape and the tokens that spend its budget"),
                );
            }
        }
        let isoflop = isoflop::parse(node, &format!("{path}.isoflop"), self.source, &mut self.errors);
        if self.errors.len() > before {
            return None;
        }
        isoflop
    }

    fn kind(&mut self, node: Option<&Node>, decl_span: Span, path: &str) -> Option<Arc<dyn NodeKind>> {
        let key = format!("{path}.kind");
        let Some(node) = node else {
            let known = self.registry.names().join(", ");
            self.errors.push(self.err(decl_span, "missing `kind:`").key(key).hint(format!("known kinds: {known}")));
            return None;
        };
        let Yaml::Str(name) = &node.value else {
            self.errors
                .push(self.err(node.span, format!("expected a kind name, found {}", node.value.type_name())).key(key));
            return None;
        };
        let kind = self.registry.get(name);
        if kind.is_none() {
            let names = self.registry.names();
            let mut e = self
                .err(node.span, format!("unknown node kind `{name}`"))
                .key(key)
                .did_you_mean(name, names.iter().copied());
            if e.hint.is_none() {
                e = e.hint(format!("known kinds: {}", names.join(", ")));
            }
            self.errors.push(e);
        }
        kind
    }

    fn matrix(&mut self, node: &Node, path: &str) -> Option<Vec<(String, Vec<Node>)>> {
        let key = format!("{path}.matrix");
        let Yaml::Map(entries) = &node.value else {
            let msg =
                format!("`matrix:` maps each sweep variable to a list of values, found {}", node.value.type_name());
            self.errors.push(self.err(node.span, msg).key(key));
            return None;
        };
        let before = self.errors.len();
        let mut out = Vec::new();
        for (k, v) in entries {
            let vkey = format!("{key}.{}", k.name);
            match &v.value {
                Yaml::Seq(items) if items.is_empty() => {
                    self.errors.push(self.err(v.span, "a sweep variable needs at least one value").key(vkey))
                }
                Yaml::Seq(items) => {
                    for item in items {
                        if matches!(item.value, Yaml::Seq(_) | Yaml::Map(_) | Yaml::Null)
                            || matches!(item.value, Yaml::Float(f) if !f.is_finite())
                        {
                            let found = match item.value {
                                Yaml::Float(f) => f.to_string(),
                                ref other => other.type_name().to_string(),
                            };
                            let msg =
                                format!("sweep values must be strings, finite numbers or booleans, found {found}");
                            self.errors.push(self.err(item.span, msg).key(&vkey));
                        }
                    }
                    let mut seen = Vec::new();
                    for item in items {
                        let text = scalar_value(item).to_string();
                        if seen.contains(&text) {
                            self.errors.push(self.err(item.span, format!("duplicate sweep value `{text}`")).key(&vkey));
                        }
                        seen.push(text);
                    }
                    out.push((k.name.clone(), items.clone()));
                }
                _ => self.errors.push(
                    self.err(v.span, format!("expected a list of values, found {}", v.value.type_name())).key(vkey),
                ),
            }
        }
        (self.errors.len() == before).then_some(out)
    }

    fn resources(&mut self, node: &Node, default: Resources, path: &str) -> Option<Resources> {
        let schema = Schema::new(vec![
            Field::default("cpu", FieldType::Int { min: 0 }, Value::Int(default.cpu.into()), "CPU slots"),
            Field::default("gpu", FieldType::Int { min: 0 }, Value::Int(default.gpu.into()), "GPU slots"),
        ]);
        let v = schema.validate(node, &format!("{path}.resources"), self.source, &mut self.errors)?;
        let get = |k: &str| v.get_path(k).and_then(Value::as_i64).map_or(0, |x| x.min(u32::MAX.into()) as u32);
        Some(Resources {
            cpu: get("cpu"),
            gpu: get("gpu"),
            gpu_optional: default.gpu_optional && get("gpu") == default.gpu,
            tasks: default.tasks,
        })
    }

    /// Replaces `${var}` sweep variables in every string. A string that is
    /// exactly `${var}` takes the variable's typed value (`n_layer: ${l}` → 6).
    /// `${UPPER_CASE}` is left alone for the shell; other unknown names are errors.
    fn substitute(&mut self, node: &Node, vars: &HashMap<&str, &Node>, path: &str) -> Node {
        let value = match &node.value {
            Yaml::Str(s) => match self.substitute_str(s, node.span, vars, path) {
                Substituted::Whole(var) => return Node { value: var.value.clone(), span: node.span },
                Substituted::Text(t) => Yaml::Str(t),
            },
            Yaml::Seq(items) => Yaml::Seq(items.iter().map(|n| self.substitute(n, vars, path)).collect()),
            Yaml::Map(entries) => Yaml::Map(
                entries
                    .iter()
                    .map(|(k, v)| (k.clone(), self.substitute(v, vars, &format!("{path}.{}", k.name))))
                    .collect(),
            ),
            other => other.clone(),
        };
        Node { value, span: node.span }
    }

    fn substitute_str<'v>(
        &mut self,
        s: &str,
        span: Span,
        vars: &HashMap<&str, &'v Node>,
        path: &str,
    ) -> Substituted<'v> {
        if !s.contains("${") {
            return Substituted::Text(s.to_string());
        }
        if let Some(name) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}')) {
            if let Some(node) = vars.get(name) {
                return Substituted::Whole(node);
            }
        }
        let mut out = String::new();
        let mut rest = s;
        while let Some(start) = rest.find("${") {
            out.push_str(&rest[..start]);
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                out.push_str(&rest[start..]);
                rest = "";
                break;
            };
            let name = &after[..end];
            match vars.get(name) {
                Some(node) => out.push_str(&scalar_value(node).to_string()),
                None if name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') => {
                    out.push_str(&rest[start..start + 3 + end]);
                }
                None => {
                    let known: Vec<&str> = vars.keys().copied().collect();
                    let mut e = self
                        .err(span, format!("`${{{name}}}` is not a sweep variable of this node"))
                        .key(path)
                        .did_you_mean(name, known.iter().copied());
                    if e.hint.is_none() {
                        e = e.hint(if known.is_empty() {
                            "declare it under `matrix:`; write environment variables in upper case".to_string()
                        } else {
                            format!("sweep variables here: {}", known.join(", "))
                        });
                    }
                    self.errors.push(e);
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        Substituted::Text(out)
    }

    fn input_refs(&mut self, node: &Node, vars: &HashMap<&str, &Node>, path: &str) -> Vec<(String, Span)> {
        let key = format!("{path}.input");
        let items: Vec<&Node> = match &node.value {
            Yaml::Seq(items) => items.iter().collect(),
            _ => vec![node],
        };
        let mut out = Vec::new();
        for item in items {
            match &item.value {
                Yaml::Str(s) => {
                    if let Substituted::Text(t) = self.substitute_str(s, item.span, vars, &key) {
                        out.push((t, item.span));
                    }
                }
                other => {
                    let msg = format!("an input is a node name such as `tokenizer`, `train[model=small]` or a glob such as `train_*`, found {}", other.type_name());
                    self.errors.push(self.err(item.span, msg).key(&key));
                }
            }
        }
        out
    }

    fn check_defaults_are_used(&mut self, defaults: &[(Key, Node)], decls: &[(Key, Node)]) {
        let kinds: Vec<Arc<dyn NodeKind>> = decls
            .iter()
            .filter_map(|(_, d)| match &d.value {
                Yaml::Map(m) => m.iter().find(|(k, _)| k.name == "kind").and_then(|(_, v)| match &v.value {
                    Yaml::Str(s) => self.registry.get(s),
                    _ => None,
                }),
                _ => None,
            })
            .collect();
        for (key, _) in defaults {
            if !kinds.iter().any(|k| k.schema().field(&key.name).is_some()) {
                let fields: Vec<&str> = kinds.iter().flat_map(|k| k.schema().fields.iter().map(|f| f.name)).collect();
                let e = self
                    .err(
                        key.span,
                        format!("default `{}` is not a parameter of any node kind used in this file", key.name),
                    )
                    .key(format!("defaults.{}", key.name))
                    .did_you_mean(&key.name, fields);
                self.errors.push(e);
            }
        }
    }

    fn resolve_inputs(&mut self, instances: Vec<Instance>) -> Vec<NodeSpec> {
        let mut seen: HashMap<String, Span> = HashMap::new();
        for inst in &instances {
            if let Some(first) = seen.insert(inst.spec.id.0.clone(), inst.spec.span) {
                let msg = format!("node `{}` is declared twice (first at line {})", inst.spec.id, first.line);
                self.errors.push(self.err(inst.spec.span, msg));
            }
        }
        let mut specs = Vec::with_capacity(instances.len());
        let mut raws = Vec::with_capacity(instances.len());
        let mut owns = Vec::with_capacity(instances.len());
        for i in instances {
            specs.push(i.spec);
            raws.push(i.raw_inputs);
            owns.push(i.own);
        }
        let lookup = Lookup::new(&specs);
        let mut resolved = Vec::with_capacity(specs.len());
        for (i, raw) in raws.iter().enumerate() {
            let errors_before = self.errors.len();
            let mut inputs = Vec::new();
            for (name, span) in raw {
                let key = format!("nodes.{}.input", specs[i].decl);
                match select(&specs, &lookup, name) {
                    Ok(nodes) if nodes.contains(&i) => self
                        .errors
                        .push(self.err(*span, format!("node `{}` cannot take itself as input", specs[i].id)).key(key)),
                    Ok(nodes) => inputs.push(InputSpec { name: name.clone(), nodes, span: *span, order_only: false }),
                    // A declaration that failed validation was already reported; its absence is no news.
                    Err(_) if self.failed_decls.contains(name.split('[').next().unwrap_or(name)) => {}
                    Err((message, hint)) => {
                        let mut e = self.err(*span, message).key(key);
                        if let Some(h) = hint {
                            e = e.hint(h);
                        }
                        self.errors.push(e);
                    }
                }
            }
            // Inputs that failed to resolve were reported; checking the rest would only echo that.
            if self.errors.len() == errors_before && !self.failed_decls.contains(&specs[i].decl) {
                self.check_inputs(&specs, i, &inputs, &owns[i]);
            }
            resolved.push(inputs);
        }
        specs
            .into_iter()
            .zip(resolved)
            .map(|(mut s, inputs)| {
                s.inputs = inputs;
                s
            })
            .collect()
    }
}

impl Loader<'_> {
    /// What node `i`'s kind says of the sweeps its inputs select
    /// ([`crate::nodes::NodeKind::check_inputs`]), once per declaration.
    fn check_inputs(&mut self, specs: &[NodeSpec], i: usize, inputs: &[InputSpec], own: &Node) {
        let node = &specs[i];
        if !self.checked_decls.insert(node.decl.clone()) {
            return; // its sweep's first instance said it
        }
        let swept: Vec<SweptNode<'_>> = inputs
            .iter()
            .flat_map(|input| &input.nodes)
            .map(|&p| SweptNode { id: &specs[p].id, decl: &specs[p].decl, matrix: &specs[p].matrix })
            .collect();
        if let Err(refusal) = node.kind.check_inputs(&node.params, &swept) {
            let span = own.get_path(&refusal.param).map_or(node.span, |n| n.span);
            let e = self.err(span, refusal.message).key(format!("nodes.{}.{}", node.decl, refusal.param));
            self.errors.push(e.hint(refusal.hint));
        }
    }

    /// Appends the helpers nodes ask for ([`crate::nodes::NodeKind::helper`]),
    /// one per distinct id, as order-only inputs of the nodes that asked.
    fn add_helpers(&mut self, nodes: &mut Vec<NodeSpec>) {
        let declared = nodes.len();
        let mut by_id: HashMap<String, usize> = HashMap::new();
        for i in 0..declared {
            let upstream = |key: &str| upstream_param(nodes, i, key);
            let Some(helper) = nodes[i].kind.helper(&nodes[i].params, &upstream) else { continue };
            let Some(kind) = self.registry.get(helper.kind) else {
                self.errors.push(self.err(
                    nodes[i].span,
                    format!("kind `{}` asks for an unknown kind `{}`", nodes[i].kind.name(), helper.kind),
                ));
                continue;
            };
            let span = nodes[i].span;
            // A helper runs where the node that asked for it runs (its `resources:` too).
            let resources = nodes[i].resources;
            let index = *by_id.entry(helper.id.clone()).or_insert_with(|| {
                nodes.push(NodeSpec {
                    id: NodeId(helper.id.clone()),
                    decl: helper.id.clone(),
                    kind,
                    params: helper.params,
                    matrix: vec![],
                    isoflop: None,
                    inputs: vec![],
                    resources,
                    span,
                });
                nodes.len() - 1
            });
            nodes[i].inputs.push(InputSpec { name: helper.id, nodes: vec![index], span, order_only: true });
        }
    }
}

/// The value of param `key` on the nearest node `i` depends on,
/// breadth-first (a train node's vocabulary is its tokenizer's).
pub fn upstream_param(nodes: &[NodeSpec], i: usize, key: &str) -> Option<Value> {
    let mut seen = HashSet::new();
    let mut queue: std::collections::VecDeque<usize> =
        nodes[i].inputs.iter().flat_map(|input| input.nodes.iter().copied()).collect();
    while let Some(j) = queue.pop_front() {
        if !seen.insert(j) {
            continue;
        }
        if let Some(v) = nodes[j].params.get_path(key) {
            return Some(v.clone());
        }
        queue.extend(nodes[j].inputs.iter().flat_map(|input| input.nodes.iter().copied()));
    }
    None
}

/// A validated value as YAML again, every node at `span` (where it was
/// inherited from), so that a branch's params validate like written ones.
fn to_yaml(value: &Value, span: Span) -> Node {
    let value = match value {
        Value::Null => Yaml::Null,
        Value::Bool(b) => Yaml::Bool(*b),
        Value::Int(i) => Yaml::Int(*i),
        Value::Float(f) => Yaml::Float(*f),
        Value::Str(s) => Yaml::Str(s.clone()),
        Value::List(items) => Yaml::Seq(items.iter().map(|v| to_yaml(v, span)).collect()),
        Value::Map(map) => {
            Yaml::Map(map.iter().map(|(k, v)| (Key { name: k.clone(), span }, to_yaml(v, span))).collect())
        }
    };
    Node { value, span }
}

/// `own` written over `base`: mappings merge key by key, anything else replaces.
fn overlay(base: Node, own: &Node) -> Node {
    match (base.value, &own.value) {
        (Yaml::Map(mut entries), Yaml::Map(own_entries)) => {
            for (k, v) in own_entries {
                match entries.iter().position(|(bk, _)| bk.name == k.name) {
                    Some(i) => {
                        let (bk, bv) = entries.remove(i);
                        entries.insert(i, (Key { name: bk.name, span: k.span }, overlay(bv, v)));
                    }
                    None => entries.push((k.clone(), v.clone())),
                }
            }
            Node { value: Yaml::Map(entries), span: own.span }
        }
        _ => own.clone(),
    }
}

enum Substituted<'v> {
    Whole(&'v Node),
    Text(String),
}

/// The value of a sweep scalar, as used in instance ids and substitutions.
fn scalar_value(node: &Node) -> Value {
    match &node.value {
        Yaml::Bool(b) => Value::Bool(*b),
        Yaml::Int(i) => Value::Int(*i),
        Yaml::Float(f) => Value::Float(*f),
        Yaml::Str(s) => Value::Str(s.clone()),
        _ => Value::Null,
    }
}

/// The cartesian product of sweep values, first variable slowest.
fn combinations(matrix: &[(String, Vec<Node>)]) -> Vec<Vec<(String, &Node)>> {
    let mut out: Vec<Vec<(String, &Node)>> = vec![vec![]];
    for (name, values) in matrix {
        out = out
            .into_iter()
            .flat_map(|prefix| {
                values.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push((name.clone(), v));
                    next
                })
            })
            .collect();
    }
    out
}

/// Resolves `decl`, `decl[var=value,…]`, an exact instance id, or a glob
/// over ids (`baseline_*`, `train[*doped*]`) to node indices.
fn select<S: AsRef<NodeSpec>>(
    nodes: &[S],
    lookup: &Lookup,
    reference: &str,
) -> Result<Vec<usize>, (String, Option<String>)> {
    if let Some(&i) = lookup.by_id.get(reference) {
        return Ok(vec![i]);
    }
    if reference.contains(['*', '?']) {
        // `[` and `]` are literal in node ids, so escape them for globset.
        let escaped: String = reference
            .chars()
            .map(|c| match c {
                '[' => "[[]".to_string(),
                ']' => "[]]".to_string(),
                c => c.to_string(),
            })
            .collect();
        let glob = globset::Glob::new(&escaped)
            .map_err(|e| (format!("invalid pattern `{reference}`: {e}"), None))?
            .compile_matcher();
        let hits: Vec<usize> = (0..nodes.len()).filter(|&i| glob.is_match(&nodes[i].as_ref().id.0)).collect();
        return if hits.is_empty() { Err((format!("`{reference}` matches no node"), None)) } else { Ok(hits) };
    }
    let (decl, filter) = match reference.split_once('[') {
        Some((decl, rest)) => match rest.strip_suffix(']') {
            Some(f) => (decl, Some(f)),
            None => return Err((format!("`{reference}` is missing a closing `]`"), None)),
        },
        None => (reference, None),
    };
    let family: Vec<usize> = lookup.by_decl.get(decl).cloned().unwrap_or_default();
    if family.is_empty() {
        let mut decls: Vec<&str> = lookup.by_decl.keys().map(String::as_str).collect();
        decls.sort_unstable();
        let hint = closest(decl, decls.iter().copied()).map(|c| format!("did you mean `{c}`?"));
        return Err((format!("no node named `{decl}`"), hint));
    }
    let Some(filter) = filter else { return Ok(family) };
    let mut wanted = BTreeMap::new();
    for part in filter.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((var, value)) = part.split_once('=') else {
            return Err((format!("`{part}` in `{reference}` is not `variable=value`"), None));
        };
        let vars: Vec<&str> = nodes[family[0]].as_ref().matrix.iter().map(|(k, _)| k.as_str()).collect();
        if !vars.contains(&var.trim()) {
            let hint = closest(var.trim(), vars.iter().copied())
                .map(|c| format!("did you mean `{c}`?"))
                .or_else(|| Some(format!("sweep variables of `{decl}`: {}", vars.join(", "))));
            return Err((format!("`{decl}` has no sweep variable `{}`", var.trim()), hint));
        }
        wanted.insert(var.trim().to_string(), value.trim().to_string());
    }
    let picked: Vec<usize> = family
        .into_iter()
        .filter(|&i| nodes[i].as_ref().matrix.iter().all(|(k, v)| wanted.get(k).is_none_or(|w| *w == v.to_string())))
        .collect();
    if picked.is_empty() {
        return Err((format!("`{reference}` matches no instance of `{decl}`"), None));
    }
    Ok(picked)
}

/// Whether `name` can name files in the cache: no separators, never `.` or `..`.
fn is_safe_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && name.chars().all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
}
