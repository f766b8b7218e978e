//! Typed settings: one struct per node kind, the one place where each
//! field's name, Rust type, schema type, default and doc are written.
//!
//! [`settings!`] declares the struct and derives its [`Schema`] from the
//! same lines, so the schema that checks files, `scalemake show` and the
//! README's reference cannot drift from what the kind reads. A kind reads
//! its struct once from validated params ([`Settings::read`]); since
//! validation filled in every default, the struct needs no defaults of its
//! own, and a field renamed on one side only fails the schema tests (serde
//! refuses unknown and missing keys) instead of falling back silently.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::schema::Schema;
#[cfg(test)]
use super::schema::{FieldType, Presence};
use super::value::Value;

/// A node kind's typed settings.
pub trait Settings: DeserializeOwned {
    /// The schema derived from the fields (see [`settings!`]).
    fn schema() -> Schema;

    /// The settings in `params`, which passed [`Settings::schema`]'s
    /// validation. An error means struct and schema disagree: a bug, which
    /// [`check_against_schema`] finds in tests.
    fn read(params: &Value) -> Result<Self, String> {
        Self::deserialize(params).map_err(|e| format!("settings do not match their schema: {e}"))
    }
}

/// A Rust value (a default such as `5e-4`, `"auto"`, `Precision::Fp32`, or
/// whole settings that a kind makes for a helper) as a [`Value`].
pub fn to_value<T: Serialize>(value: &T) -> Value {
    let json = serde_json::to_value(value).expect("settings serialise");
    serde_json::from_value(json).expect("serialised settings are a Value")
}

/// Declares a settings struct and derives its schema from the same fields.
///
/// ```ignore
/// settings! {
///     /// The `fit` node's settings.
///     pub struct FitParams {
///         /// share of each curve's start to ignore
///         skip_fraction: f64 = [FieldType::Float] default(0.1),
///         /// a CSV of runs to fit instead of training nodes
///         csv: Option<String> = [FieldType::RelPath] optional,
///         /// workers for the bootstrap
///         threads: u64 = [FieldType::Int { min: 0 }] default(0) metadata,
///     }
/// }
/// ```
///
/// `required`, `optional` (the Rust type is an `Option`) or `default(v)`
/// says whether a file must set the field; `metadata` keeps it out of the
/// node's key. The doc comment is the schema's one-line doc.
macro_rules! settings {
    (
        $(#[$attr:meta])*
        pub struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                $field:ident : $ty:ty = [$fty:expr] $presence:ident $(($default:expr))? $($metadata:ident)?
            ),* $(,)?
        }
    ) => {
        $(#[$attr])*
        #[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[doc = $doc])* pub $field: $ty, )*
        }

        impl $crate::settings::Settings for $name {
            fn schema() -> $crate::settings::Schema {
                $crate::settings::Schema::new(vec![$(
                    $crate::settings::settings!(
                        @field $field, $fty, concat!($($doc),*).trim(), $presence $(($default))? $($metadata)?
                    )
                ),*])
            }
        }
    };
    (@field $field:ident, $fty:expr, $doc:expr, required) => {
        $crate::settings::Field::required(stringify!($field), $fty, $doc)
    };
    (@field $field:ident, $fty:expr, $doc:expr, optional) => {
        $crate::settings::Field::optional(stringify!($field), $fty, $doc)
    };
    (@field $field:ident, $fty:expr, $doc:expr, default($default:expr)) => {
        $crate::settings::Field::default(stringify!($field), $fty, $crate::settings::to_value(&$default), $doc)
    };
    (@field $field:ident, $fty:expr, $doc:expr, $presence:ident $(($default:expr))? metadata) => {
        $crate::settings::settings!(@field $field, $fty, $doc, $presence $(($default))?).metadata()
    };
}
pub(crate) use settings;

/// Values that `schema` accepts, together using every field and every
/// option of every enum: reading each as `T` fails where the struct and the
/// schema disagree on a name or a type (a float where `T` wants an integer,
/// an option `T` does not know).
#[cfg(test)]
fn samples(schema: &Schema) -> Vec<Value> {
    let base: Vec<(String, Value)> = schema.fields.iter().map(|f| (f.name.to_string(), sample(&f.ty, 0))).collect();
    let mut out = vec![Value::Map(base.iter().cloned().collect())];
    for (i, field) in schema.fields.iter().enumerate() {
        let variants: Vec<Value> = match &field.ty {
            FieldType::Enum(options) => (1..options.len()).map(|n| sample(&field.ty, n)).collect(),
            FieldType::Struct(inner) => samples(inner).into_iter().skip(1).collect(),
            _ => Vec::new(),
        };
        for variant in variants {
            let mut map = base.clone();
            map[i].1 = variant;
            out.push(Value::Map(map.into_iter().collect()));
        }
    }
    out.push(defaults_sample(schema));
    out
}

/// Defaults only: what a file that sets just the required fields reads as.
#[cfg(test)]
fn defaults_sample(schema: &Schema) -> Value {
    let fields = schema.fields.iter().filter_map(|f| match (&f.presence, &f.ty) {
        (Presence::Required, ty) => Some((f.name.to_string(), sample(ty, 0))),
        (Presence::Default(Value::Null), FieldType::Struct(inner)) => {
            Some((f.name.to_string(), defaults_sample(inner)))
        }
        (Presence::Default(v), _) => Some((f.name.to_string(), v.clone())),
        (Presence::Optional, _) => None,
    });
    Value::Map(fields.collect())
}

/// A value of type `ty` (the `n`th option of an enum).
#[cfg(test)]
fn sample(ty: &FieldType, n: usize) -> Value {
    match ty {
        FieldType::Int { min } => Value::Int((*min).max(1)),
        FieldType::Float => Value::Float(0.25),
        FieldType::Bool => Value::Bool(true),
        FieldType::Str => Value::Str("x".into()),
        FieldType::RelPath => Value::Str("dir/file".into()),
        FieldType::HttpUrl => Value::Str("http://127.0.0.1:1".into()),
        FieldType::Enum(options) => Value::Str(options[n].to_string()),
        FieldType::List(item) => Value::List(vec![sample(item, 0)]),
        FieldType::Struct(inner) => samples(inner).swap_remove(0),
        FieldType::Dict(item) => Value::Map([("key".to_string(), sample(item, 0))].into_iter().collect()),
    }
}

/// Whether every sample of `T`'s schema reads as `T`: the test that the
/// struct and its derived schema agree on names, types and enum options.
#[cfg(test)]
pub(crate) fn check_against_schema<T: Settings>() -> Result<(), String> {
    for value in samples(&T::schema()) {
        T::read(&value).map_err(|e| format!("{e} (reading {value})"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Value;

    #[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Speed {
        Fast,
        Slow,
    }

    settings! {
        /// A kind's settings, for these tests.
        pub struct Demo {
            /// how fast
            speed: Speed = [FieldType::Enum(&["fast", "slow"])] default(Speed::Fast),
            /// steps to take
            steps: u64 = [FieldType::Int { min: 1 }] required,
            /// a label
            label: Option<String> = [FieldType::Str] optional metadata,
        }
    }

    settings! {
        /// The same, with an enum option the type lacks.
        pub struct Mismatched {
            /// how fast
            speed: Speed = [FieldType::Enum(&["fast", "slow", "warp"])] default(Speed::Fast),
        }
    }

    #[test]
    fn the_schema_is_the_fields() {
        let schema = Demo::schema();
        let names: Vec<&str> = schema.fields.iter().map(|f| f.name).collect();
        assert_eq!(names, ["speed", "steps", "label"]);
        assert!(matches!(&schema.fields[0].presence, Presence::Default(Value::Str(s)) if s == "fast"));
        assert!(matches!(schema.fields[1].presence, Presence::Required));
        assert_eq!(schema.fields[1].doc, "steps to take");
        assert!(schema.fields[0].hashed && !schema.fields[2].hashed);
        check_against_schema::<Demo>().unwrap();
    }

    #[test]
    fn an_option_the_type_lacks_fails_the_check() {
        let err = check_against_schema::<Mismatched>().unwrap_err();
        assert!(err.contains("warp"), "{err}");
    }
}
