//! Parameter schemas that node kinds declare, and validation of YAML against them.
//!
//! A kind lists its fields once; from that list scalemake gets type checking,
//! unknown-key errors with did-you-mean hints, defaults made explicit (they
//! appear in `scalemake show` and in the hash, so changing a kind's default is
//! a visible change), and the hash boundary: fields marked
//! [`Field::metadata`] never change a node's key.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::error::{SourceFile, SpecError};
use super::value::Value;
use super::yaml::{Node, Yaml};

/// The type of one parameter.
#[derive(Clone, Debug)]
pub enum FieldType {
    /// An integer at least `min`.
    Int {
        /// Smallest allowed value.
        min: i64,
    },
    /// Any finite number (an integer is accepted and widened).
    Float,
    /// `true` or `false`.
    Bool,
    /// A string.
    Str,
    /// A relative path that stays below its base directory (no `..`, not
    /// absolute): where a node may write.
    RelPath,
    /// An `http://` or `https://` URL with a host (a server to report to).
    HttpUrl,
    /// One of a fixed set of strings.
    Enum(&'static [&'static str]),
    /// A list of items of one type; a single item is accepted as a one-item list.
    List(Box<FieldType>),
    /// A mapping with its own schema (`optim: { lr: … }`).
    Struct(Schema),
    /// A mapping from free-form keys to values of one type (`env:`).
    Dict(Box<FieldType>),
}

impl FieldType {
    fn describe(&self) -> String {
        match self {
            FieldType::Int { min } if *min > i64::MIN => format!("an integer ≥ {min}"),
            FieldType::Int { .. } => "an integer".into(),
            FieldType::Float => "a number".into(),
            FieldType::Bool => "true or false".into(),
            FieldType::Str => "a string".into(),
            FieldType::RelPath => "a relative path".into(),
            FieldType::HttpUrl => "an http:// or https:// URL".into(),
            FieldType::Enum(options) => format!("one of {}", options.join(", ")),
            FieldType::List(item) => format!("a list of {}", item.describe_plural()),
            FieldType::Struct(_) | FieldType::Dict(_) => "a mapping".into(),
        }
    }

    fn describe_plural(&self) -> String {
        match self {
            FieldType::Str => "strings".into(),
            FieldType::RelPath => "relative paths".into(),
            FieldType::Int { .. } => "integers".into(),
            FieldType::Float => "numbers".into(),
            other => other.describe(),
        }
    }
}

/// Whether a field must be given, and what it is when it is not.
#[derive(Clone, Debug)]
pub enum Presence {
    /// The user must set it.
    Required,
    /// Absent means this value.
    Default(Value),
    /// Absent means absent (the kind handles it).
    Optional,
}

/// One parameter of a node kind.
#[derive(Clone, Debug)]
pub struct Field {
    /// Key in the YAML mapping.
    pub name: &'static str,
    /// Its type.
    pub ty: FieldType,
    /// Required, defaulted or optional.
    pub presence: Presence,
    /// False for metadata (log interval, worker count…) that cannot change
    /// the artifact and so is left out of the node key.
    pub hashed: bool,
    /// One line for `scalemake show` and docs.
    pub doc: &'static str,
}

impl Field {
    /// A field the user must set.
    pub fn required(name: &'static str, ty: FieldType, doc: &'static str) -> Self {
        Field { name, ty, presence: Presence::Required, hashed: true, doc }
    }

    /// A field with a default.
    pub fn default(name: &'static str, ty: FieldType, default: Value, doc: &'static str) -> Self {
        Field { name, ty, presence: Presence::Default(default), hashed: true, doc }
    }

    /// A field that may be absent.
    pub fn optional(name: &'static str, ty: FieldType, doc: &'static str) -> Self {
        Field { name, ty, presence: Presence::Optional, hashed: true, doc }
    }

    /// Marks the field as metadata: validated, shown, but not hashed.
    pub fn metadata(mut self) -> Self {
        self.hashed = false;
        self
    }
}

/// The parameters of a node kind (or of a nested mapping).
#[derive(Clone, Debug, Default)]
pub struct Schema {
    /// Fields in documentation order.
    pub fields: Vec<Field>,
}

impl Schema {
    /// The fields as Markdown table rows (`| key | type | default | meaning |`),
    /// nested mappings as `parent.child`: the README's reference is this.
    pub fn markdown_rows(&self, prefix: &str) -> String {
        let mut out = String::new();
        for f in &self.fields {
            let key = format!("{prefix}{}", f.name);
            let default = match &f.presence {
                _ if matches!(f.ty, FieldType::Struct(_)) => "(below)".to_string(),
                Presence::Required => "**required**".to_string(),
                Presence::Default(v) => format!("`{}`", v.to_string().replace('|', "\\|")),
                Presence::Optional => "–".to_string(),
            };
            let doc = if f.hashed { f.doc.to_string() } else { format!("{} *(not in the key)*", f.doc) };
            out.push_str(&format!(
                "| `{key}` | {} | {default} | {} |\n",
                f.ty.describe().replace('|', "\\|"),
                doc.replace('|', "\\|")
            ));
            if let FieldType::Struct(inner) = &f.ty {
                out.push_str(&inner.markdown_rows(&format!("{key}.")));
            }
        }
        out
    }

    /// A schema with these fields.
    pub fn new(fields: Vec<Field>) -> Self {
        Schema { fields }
    }

    /// The field called `name`.
    pub fn field(&self, name: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// `params` with metadata fields removed, recursively: what the key hashes.
    pub fn hashed_part(&self, params: &Value) -> Value {
        let Some(map) = params.as_map() else { return params.clone() };
        let kept = map
            .iter()
            .filter_map(|(k, v)| {
                let field = self.field(k)?;
                if !field.hashed {
                    return None;
                }
                let v = match &field.ty {
                    FieldType::Struct(inner) => inner.hashed_part(v),
                    _ => v.clone(),
                };
                Some((k.clone(), v))
            })
            .collect();
        Value::Map(kept)
    }

    /// Validates a mapping node against this schema, filling in defaults.
    /// Problems are pushed to `errors`; `None` means at least one was found.
    pub fn validate(
        &self,
        node: &Node,
        key_path: &str,
        source: &Arc<SourceFile>,
        errors: &mut Vec<SpecError>,
    ) -> Option<Value> {
        let Yaml::Map(entries) = &node.value else {
            errors.push(
                SpecError::new(source, node.span, format!("expected a mapping, found {}", node.value.type_name()))
                    .key(key_path),
            );
            return None;
        };
        let before = errors.len();
        let mut out = BTreeMap::new();
        for (key, value) in entries {
            let path = join(key_path, &key.name);
            match self.field(&key.name) {
                Some(field) => {
                    if let Some(v) = check_type(&field.ty, value, &path, source, errors) {
                        out.insert(key.name.clone(), v);
                    }
                }
                None => errors.push(
                    SpecError::new(source, key.span, format!("unknown key `{}`", key.name))
                        .key(&path)
                        .did_you_mean(&key.name, self.fields.iter().map(|f| f.name)),
                ),
            }
        }
        for field in &self.fields {
            if out.contains_key(field.name) || entries.iter().any(|(k, _)| k.name == field.name) {
                continue;
            }
            match &field.presence {
                Presence::Required => errors.push(
                    SpecError::new(source, node.span, format!("missing required key `{}` ({})", field.name, field.doc))
                        .key(join(key_path, field.name)),
                ),
                Presence::Default(v) => {
                    let v = match (&field.ty, v) {
                        (FieldType::Struct(inner), Value::Null) => inner.defaults(),
                        _ => v.clone(),
                    };
                    out.insert(field.name.to_string(), v);
                }
                Presence::Optional => {}
            }
        }
        (errors.len() == before).then_some(Value::Map(out))
    }

    /// All defaults of a nested struct whose key was omitted entirely.
    fn defaults(&self) -> Value {
        Value::Map(
            self.fields
                .iter()
                .filter_map(|f| match &f.presence {
                    Presence::Default(v) => Some((f.name.to_string(), v.clone())),
                    _ => None,
                })
                .collect(),
        )
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn check_type(
    ty: &FieldType,
    node: &Node,
    path: &str,
    source: &Arc<SourceFile>,
    errors: &mut Vec<SpecError>,
) -> Option<Value> {
    let mismatch = |errors: &mut Vec<SpecError>| {
        errors.push(
            SpecError::new(source, node.span, format!("expected {}, found {}", ty.describe(), node.value.type_name()))
                .key(path),
        );
        None
    };
    match (ty, &node.value) {
        (FieldType::Int { min }, Yaml::Int(i)) => {
            if i < min {
                errors.push(SpecError::new(source, node.span, format!("must be ≥ {min}, found {i}")).key(path));
                return None;
            }
            Some(Value::Int(*i))
        }
        (FieldType::Int { min }, Yaml::Float(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => {
            // `409.6e6` style token counts are integers written as floats.
            check_type(
                &FieldType::Int { min: *min },
                &Node { value: Yaml::Int(*f as i64), span: node.span },
                path,
                source,
                errors,
            )
        }
        (FieldType::Int { .. }, Yaml::Float(f)) => {
            // Say which number: `1.5`, `inf`, or one too large for an integer (`99999999999999999999999`).
            let why = if f.is_finite() && f.fract() == 0.0 { " (beyond the 64-bit integer range)" } else { "" };
            errors.push(
                SpecError::new(source, node.span, format!("expected {}, found {f}{why}", ty.describe())).key(path),
            );
            None
        }
        (FieldType::Int { .. }, Yaml::Str(s)) if looks_like_big_integer(s) => {
            errors.push(
                SpecError::new(
                    source,
                    node.span,
                    format!("expected {}, found `{s}`, beyond the 64-bit integer range", ty.describe()),
                )
                .key(path),
            );
            None
        }
        (FieldType::Float, Yaml::Int(i)) => Some(Value::Float(*i as f64)),
        (FieldType::Float, Yaml::Float(f)) => {
            if !f.is_finite() {
                errors.push(SpecError::new(source, node.span, format!("must be a finite number, found {f}")).key(path));
                return None;
            }
            Some(Value::Float(*f))
        }
        (FieldType::Bool, Yaml::Bool(b)) => Some(Value::Bool(*b)),
        (FieldType::Str, Yaml::Str(s)) => Some(Value::Str(s.clone())),
        (FieldType::RelPath, Yaml::Str(s)) => {
            let p = std::path::Path::new(s);
            if s.is_empty() || p.is_absolute() || p.components().any(|c| c == std::path::Component::ParentDir) {
                let e = SpecError::new(
                    source,
                    node.span,
                    format!("`{s}` must be a relative path inside the node's output directory"),
                );
                errors.push(e.key(path).hint(
                    "no `..` and no leading `/`: a node writes only into its own $OUT, which becomes its artifact",
                ));
                return None;
            }
            Some(Value::Str(s.clone()))
        }
        (FieldType::HttpUrl, Yaml::Str(s)) => {
            let host = s.strip_prefix("http://").or_else(|| s.strip_prefix("https://")).map(|rest| {
                let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
                authority.rsplit_once('@').map_or(authority, |(_, host)| host)
            });
            if !host.is_some_and(|h| !h.is_empty() && !h.starts_with(':') && !h.contains(char::is_whitespace)) {
                let e =
                    SpecError::new(source, node.span, format!("`{s}` is not an http:// or https:// URL with a host"));
                errors.push(e.key(path).hint("for example http://127.0.0.1:5000"));
                return None;
            }
            Some(Value::Str(s.clone()))
        }
        // Numbers and booleans are fine as strings (`cmd: 1`), written as they read.
        (FieldType::Str, Yaml::Int(i)) => Some(Value::Str(i.to_string())),
        (FieldType::Str, Yaml::Bool(b)) => Some(Value::Str(b.to_string())),
        (FieldType::Enum(options), Yaml::Str(s)) => {
            if options.contains(&s.as_str()) {
                Some(Value::Str(s.clone()))
            } else {
                errors.push(
                    SpecError::new(source, node.span, format!("`{s}` is not one of {}", options.join(", ")))
                        .key(path)
                        .did_you_mean(s, options.iter().copied()),
                );
                None
            }
        }
        (FieldType::List(item), Yaml::Seq(items)) => {
            let before = errors.len();
            let values: Vec<Value> = items
                .iter()
                .enumerate()
                .filter_map(|(i, n)| check_type(item, n, &format!("{path}[{i}]"), source, errors))
                .collect();
            (errors.len() == before).then_some(Value::List(values))
        }
        (FieldType::List(_), Yaml::Map(_)) => mismatch(errors),
        (FieldType::List(item), _) => check_type(item, node, path, source, errors).map(|v| Value::List(vec![v])),
        (FieldType::Struct(schema), Yaml::Map(_)) => schema.validate(node, path, source, errors),
        (FieldType::Dict(item), Yaml::Map(entries)) => {
            let before = errors.len();
            let mut out = BTreeMap::new();
            for (k, v) in entries {
                if let Some(v) = check_type(item, v, &join(path, &k.name), source, errors) {
                    out.insert(k.name.clone(), v);
                }
            }
            (errors.len() == before).then_some(Value::Map(out))
        }
        _ => mismatch(errors),
    }
}

/// `0x…`, `0o…` or decimal digits (with `_`) that the YAML loader kept as
/// a string because they overflow i64.
fn looks_like_big_integer(s: &str) -> bool {
    let body = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (digits, radix) = match body.strip_prefix("0x").or_else(|| body.strip_prefix("0o")) {
        Some(rest) => (rest, if body.starts_with("0x") { 16 } else { 8 }),
        None => (body, 10),
    };
    !digits.is_empty() && digits.chars().all(|c| c == '_' || c.is_digit(radix))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::yaml::parse;
    use std::path::PathBuf;

    fn schema() -> Schema {
        Schema::new(vec![
            Field::required("cmd", FieldType::Str, "the command"),
            Field::default("retries", FieldType::Int { min: 0 }, Value::Int(0), "retries"),
            Field::default("log_every", FieldType::Int { min: 1 }, Value::Int(10), "log interval").metadata(),
            Field::default(
                "optim",
                FieldType::Struct(Schema::new(vec![Field::default("lr", FieldType::Float, Value::Float(1e-3), "lr")])),
                Value::Null,
                "optimiser",
            ),
        ])
    }

    fn check(src: &str) -> Result<Value, Vec<SpecError>> {
        let source = Arc::new(SourceFile { path: PathBuf::from("t.yaml"), text: src.into() });
        let node = parse(src).unwrap();
        let mut errors = vec![];
        schema().validate(&node, "n", &source, &mut errors).ok_or(errors)
    }

    #[test]
    fn defaults_fill_in_including_nested() {
        let v = check("cmd: echo").unwrap();
        assert_eq!(v.to_string(), "{cmd: echo, log_every: 10, optim: {lr: 0.001}, retries: 0}");
    }

    #[test]
    fn unknown_key_has_position_and_hint() {
        let errs = check("cmd: echo\nretrys: 2\n").unwrap_err();
        assert_eq!(errs[0].to_string(), "t.yaml:2:1: `n.retrys`: unknown key `retrys`");
        assert_eq!(errs[0].hint.as_deref(), Some("did you mean `retries`?"));
    }

    #[test]
    fn wrong_type_and_missing_required() {
        let errs = check("retries: [1]\noptim: {lr: fast}\n").unwrap_err();
        let text: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
        assert!(text.iter().any(|e| e.contains("`n.retries`: expected an integer ≥ 0, found a list")), "{text:?}");
        assert!(
            text.iter().any(|e| e.starts_with("t.yaml:2:13:") && e.contains("`n.optim.lr`: expected a number")),
            "{text:?}"
        );
        assert!(text.iter().any(|e| e.contains("missing required key `cmd`")), "{text:?}");
    }

    #[test]
    fn metadata_is_not_hashed() {
        let v = check("cmd: echo\nlog_every: 3").unwrap();
        assert_eq!(schema().hashed_part(&v).to_string(), "{cmd: echo, optim: {lr: 0.001}, retries: 0}");
    }

    #[test]
    fn urls_need_a_scheme_and_a_host() {
        let schema = Schema::new(vec![Field::required("uri", FieldType::HttpUrl, "a server")]);
        let check = |src: &str| {
            let source = Arc::new(SourceFile { path: PathBuf::from("t.yaml"), text: src.into() });
            let mut errors = vec![];
            schema.validate(&parse(src).unwrap(), "n", &source, &mut errors).ok_or(errors)
        };
        for good in ["http://127.0.0.1:5000", "https://mlflow.example.org/prefix/", "http://user@host"] {
            assert!(check(&format!("uri: '{good}'")).is_ok(), "{good}");
        }
        for bad in ["127.0.0.1:5000", "file:///tmp/mlruns", "http://", "http://:5000", "https:///x"] {
            let errs = check(&format!("\nuri: '{bad}'")).unwrap_err();
            assert_eq!(
                errs[0].to_string(),
                format!("t.yaml:2:6: `n.uri`: `{bad}` is not an http:// or https:// URL with a host")
            );
        }
    }

    #[test]
    fn nan_is_rejected() {
        let errs = check("cmd: x\noptim: {lr: .nan}").unwrap_err();
        assert!(errs[0].message.contains("finite"));
    }
}
