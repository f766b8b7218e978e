//! Resolved parameter values: what a node kind receives and what is hashed.
//!
//! Unlike [`super::yaml::Yaml`] these carry no positions, keep mappings sorted
//! (a `BTreeMap`, so key order in the file never matters), and are guaranteed
//! finite: validation rejects NaN and infinities before a `Value` exists.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A validated parameter value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    /// No value.
    Null,
    /// A boolean.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A finite float.
    Float(f64),
    /// A string.
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A mapping with sorted keys.
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The number as f64, if this is an integer or a float.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::Int(i) => Some(i as f64),
            Value::Float(f) => Some(f),
            _ => None,
        }
    }

    /// The integer, if this is one (or a float with an integral value).
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            Value::Int(i) => Some(i),
            Value::Float(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(f as i64),
            _ => None,
        }
    }

    /// The list, if this is one.
    pub fn as_list(&self) -> Option<&[Value]> {
        match self {
            Value::List(l) => Some(l),
            _ => None,
        }
    }

    /// The mapping, if this is one.
    pub fn as_map(&self) -> Option<&BTreeMap<String, Value>> {
        match self {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    /// Sets the value at a dotted path, making the mappings on the way
    /// (a non-mapping on the way is replaced by one).
    pub fn set_path(&mut self, path: &str, value: Value) {
        let (head, rest) = match path.split_once('.') {
            Some((head, rest)) => (head, Some(rest)),
            None => (path, None),
        };
        if !matches!(self, Value::Map(_)) {
            *self = Value::Map(BTreeMap::new());
        }
        let Value::Map(map) = self else { unreachable!("made a mapping above") };
        match rest {
            None => {
                map.insert(head.to_string(), value);
            }
            Some(rest) => map.entry(head.to_string()).or_insert(Value::Null).set_path(rest, value),
        }
    }

    /// Looks up a dotted path such as `optim.lr`.
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        path.split('.').try_fold(self, |v, part| v.as_map()?.get(part))
    }

    /// Every leaf under its dotted path, rendered (`model.d_model → 64`):
    /// params as a flat table, for the dashboard and MLflow.
    pub fn leaves(&self) -> BTreeMap<String, String> {
        fn walk(prefix: &str, value: &Value, out: &mut BTreeMap<String, String>) {
            match value {
                Value::Map(map) => {
                    for (k, v) in map {
                        let path = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                        walk(&path, v, out);
                    }
                }
                other => {
                    out.insert(prefix.to_string(), other.to_string());
                }
            }
        }
        let mut out = BTreeMap::new();
        walk("", self, &mut out);
        out
    }
}

/// Compact one-line rendering used in messages (`5e-4`, `[a, b]`, `{lr: 1}`).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => {
                if x.abs() >= 1e-3 && x.abs() < 1e6 || *x == 0.0 {
                    write!(f, "{x}")
                } else {
                    write!(f, "{x:e}")
                }
            }
            Value::Str(s) => write!(f, "{s}"),
            Value::List(items) => {
                write!(f, "[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{item}")?;
                }
                write!(f, "]")
            }
            Value::Map(map) => {
                write!(f, "{{")?;
                for (i, (k, v)) in map.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_flatten_to_dotted_paths() {
        let mut map = BTreeMap::new();
        let mut model = BTreeMap::new();
        model.insert("d_model".to_string(), Value::Int(64));
        map.insert("model".to_string(), Value::Map(model));
        map.insert("lr".to_string(), Value::Float(0.003));
        let out = Value::Map(map).leaves();
        assert_eq!(out.get("model.d_model").map(String::as_str), Some("64"));
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn display_is_compact() {
        assert_eq!(Value::Float(5e-4).to_string(), "5e-4");
        assert_eq!(Value::Float(0.25).to_string(), "0.25");
        let map = Value::Map(BTreeMap::from([
            ("b".into(), Value::Int(1)),
            ("a".into(), Value::List(vec![Value::Bool(true)])),
        ]));
        assert_eq!(map.to_string(), "{a: [true], b: 1}");
    }

    #[test]
    fn dotted_paths() {
        let v = Value::Map(BTreeMap::from([(
            "optim".into(),
            Value::Map(BTreeMap::from([("lr".into(), Value::Float(1e-3))])),
        )]));
        assert_eq!(v.get_path("optim.lr"), Some(&Value::Float(1e-3)));
        assert_eq!(v.get_path("optim.beta"), None);
    }
}
