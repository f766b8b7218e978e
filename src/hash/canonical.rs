//! Canonical byte encoding of params: equal meaning ⇒ equal bytes.
//!
//! Maps are already sorted ([`Value::Map`] is a `BTreeMap`); numbers are
//! normalised so that `1000`, `1e3` and `1000.0` encode alike, and `-0.0` as
//! `0`. Every item is tagged and length-prefixed, so no two different values
//! share an encoding.

use crate::settings::Value;

/// Appends the canonical encoding of `v` to `out`.
pub fn canonical_bytes(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.push(b'n'),
        Value::Bool(b) => out.extend_from_slice(if *b { b"t" } else { b"f" }),
        Value::Int(i) => {
            out.push(b'i');
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Float(f) => {
            // Integral floats within the exact range are integers: 409.6e6 == 409600000.
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                out.push(b'i');
                out.extend_from_slice(&(*f as i64).to_le_bytes());
            } else {
                out.push(b'd');
                out.extend_from_slice(&f.to_bits().to_le_bytes());
            }
        }
        Value::Str(s) => {
            out.push(b's');
            out.extend_from_slice(&(s.len() as u64).to_le_bytes());
            out.extend_from_slice(s.as_bytes());
        }
        Value::List(items) => {
            out.push(b'l');
            out.extend_from_slice(&(items.len() as u64).to_le_bytes());
            for item in items {
                canonical_bytes(item, out);
            }
        }
        Value::Map(map) => {
            out.push(b'm');
            out.extend_from_slice(&(map.len() as u64).to_le_bytes());
            for (k, v) in map {
                out.extend_from_slice(&(k.len() as u64).to_le_bytes());
                out.extend_from_slice(k.as_bytes());
                canonical_bytes(v, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = vec![];
        canonical_bytes(v, &mut out);
        out
    }

    #[test]
    fn numbers_are_normalised() {
        assert_eq!(enc(&Value::Int(1000)), enc(&Value::Float(1e3)));
        assert_eq!(enc(&Value::Float(0.0)), enc(&Value::Float(-0.0)));
        assert_eq!(enc(&Value::Float(5e-4)), enc(&Value::Float(0.0005)));
        assert_ne!(enc(&Value::Float(0.5)), enc(&Value::Int(0)));
    }

    #[test]
    fn no_ambiguity_between_shapes() {
        let a = Value::List(vec![Value::Str("ab".into())]);
        let b = Value::List(vec![Value::Str("a".into()), Value::Str("b".into())]);
        assert_ne!(enc(&a), enc(&b));
        assert_ne!(enc(&Value::Str("1".into())), enc(&Value::Int(1)));
    }
}
