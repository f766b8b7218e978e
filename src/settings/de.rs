//! Reading a validated [`Value`] into a typed struct with serde, directly
//! (no JSON in between: plans of 10,000 nodes read settings many times).

use serde::de::value::{Error, MapDeserializer, SeqDeserializer};
use serde::de::{IntoDeserializer, Visitor};
use serde::forward_to_deserialize_any;

use super::value::Value;

impl<'de> serde::Deserializer<'de> for &'de Value {
    type Error = Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Value::Null => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(*b),
            Value::Int(i) => visitor.visit_i64(*i),
            Value::Float(f) => visitor.visit_f64(*f),
            Value::Str(s) => visitor.visit_borrowed_str(s),
            Value::List(items) => visitor.visit_seq(SeqDeserializer::new(items.iter())),
            Value::Map(entries) => {
                visitor.visit_map(MapDeserializer::new(entries.iter().map(|(k, v)| (k.as_str(), v))))
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    /// An integral float where an integer is wanted (`5e8` tokens) is that integer.
    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        match self.as_i64() {
            Some(i) => visitor.visit_i64(i),
            None => self.deserialize_any(visitor),
        }
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_u64(visitor)
    }

    /// Unit enums are their names (`precision: bf16`).
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        match self {
            Value::Str(s) => visitor.visit_enum(s.as_str().into_deserializer()),
            _ => self.deserialize_any(visitor),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i128 u8 u16 u32 u128 f32 f64 char str string bytes byte_buf unit unit_struct
        newtype_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

impl<'de> IntoDeserializer<'de, Error> for &'de Value {
    type Deserializer = Self;

    fn into_deserializer(self) -> Self {
        self
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Fast,
        Slow,
    }

    #[derive(Deserialize, Debug, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        rate: f64,
        steps: u64,
        mode: Mode,
        tag: Option<String>,
        sizes: Vec<u64>,
    }

    fn map(entries: &[(&str, Value)]) -> Value {
        Value::Map(entries.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
    }

    #[test]
    fn reads_numbers_enums_options_and_lists() {
        let value = map(&[
            ("rate", Value::Int(1)),
            ("steps", Value::Float(5e8)),
            ("mode", Value::Str("slow".into())),
            ("sizes", Value::List(vec![Value::Int(1), Value::Int(2)])),
        ]);
        let read = Sample::deserialize(&value).unwrap();
        assert_eq!(read, Sample { rate: 1.0, steps: 500_000_000, mode: Mode::Slow, tag: None, sizes: vec![1, 2] });
    }

    #[test]
    fn a_key_the_struct_lacks_or_a_wrong_type_is_an_error() {
        let base = [("rate", Value::Int(1)), ("steps", Value::Int(1)), ("mode", Value::Str("fast".into()))];
        let with = |extra: (&str, Value)| {
            let mut entries = base.to_vec();
            entries.push(("sizes", Value::List(vec![])));
            entries.push(extra);
            map(&entries)
        };
        assert!(Sample::deserialize(&with(("renamed", Value::Int(1)))).unwrap_err().to_string().contains("renamed"));
        assert!(Sample::deserialize(&with(("tag", Value::Int(1)))).is_err());
        assert!(Sample::deserialize(&map(&base)).unwrap_err().to_string().contains("sizes"));
    }
}
