//! The settings vocabulary that experiment files and node kinds share:
//! YAML with positions, validated [`Value`]s, the [`Schema`]s kinds declare,
//! the typed [`Settings`] each kind reads them into (declared with
//! `settings!`, which derives the schema), and the spanned errors
//! validation reports.
//!
//! It sits below both `spec` (which loads files with it) and `nodes` (which
//! declare their parameters with it), so that neither imports the other's
//! internals: `spec` depends on `nodes` for the kinds, never the reverse.

mod de;
mod error;
mod schema;
mod typed;
mod value;
pub mod yaml;

pub use error::{closest, LoadError, SourceFile, SpecError, SpecErrors};
pub use schema::{Field, FieldType, Presence, Schema};
#[cfg(test)]
pub(crate) use typed::check_against_schema;
pub(crate) use typed::settings;
pub use typed::{to_value, Settings};
pub use value::Value;
