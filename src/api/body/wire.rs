//! Reading a JSON body into a request type through serde, with an error
//! type of our own. `serde_json::Error` renders the offending value into
//! its text (`invalid type: string "038258-…"`); `Wrong` keeps only which
//! field failed and what that field must be, so a problem document cannot
//! carry a value by construction. The field's path comes from
//! `serde_path_to_error` (already used by the seed reader).

use serde::de::value::{MapDeserializer, SeqDeserializer};
use serde::de::{self, Deserializer, Expected, IntoDeserializer, Unexpected, Visitor};
use serde_json::Value;
use std::fmt;

/// Why a body did not deserialize, without the value.
#[derive(Debug)]
pub(crate) enum Wrong {
    /// What the field must be, as a phrase after its name ("must be a
    /// string"). Only request types' own deserializers and the domain's
    /// value-free parse errors reach `custom`.
    Must(String),
    /// A required field is absent.
    Missing(&'static str),
    /// A field the type does not have (its name if plain, see `name`),
    /// and those it has.
    Unknown {
        key: Option<String>,
        allowed: &'static [&'static str],
    },
}

impl fmt::Display for Wrong {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Must(m) => f.write_str(m),
            Self::Missing(field) => write!(f, "{field} is required"),
            Self::Unknown { .. } => f.write_str("unknown field"),
        }
    }
}

impl std::error::Error for Wrong {}

/// "must be …" from what a visitor expects; serde's own visitors say
/// "a string", ours say "must be a string".
fn must(exp: &dyn Expected) -> Wrong {
    let e = exp.to_string();
    if e.starts_with("must ") || e.starts_with("is ") {
        Wrong::Must(e)
    } else {
        Wrong::Must(format!("must be {e}"))
    }
}

impl de::Error for Wrong {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self::Must(msg.to_string())
    }
    fn invalid_type(_: Unexpected<'_>, exp: &dyn Expected) -> Self {
        must(exp)
    }
    fn invalid_value(_: Unexpected<'_>, exp: &dyn Expected) -> Self {
        must(exp)
    }
    fn invalid_length(_: usize, exp: &dyn Expected) -> Self {
        must(exp)
    }
    fn unknown_variant(_: &str, expected: &'static [&'static str]) -> Self {
        Self::Must(format!("must be one of {}", expected.join(", ")))
    }
    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::Unknown {
            key: super::name(field).map(str::to_owned),
            allowed: expected,
        }
    }
    fn missing_field(field: &'static str) -> Self {
        Self::Missing(field)
    }
    fn duplicate_field(_: &'static str) -> Self {
        Self::Must("is given more than once".into())
    }
}

/// A parsed JSON value as a serde deserializer whose error is `Wrong`.
pub(crate) struct Node(pub(crate) Value);

impl<'de> IntoDeserializer<'de, Wrong> for Node {
    type Deserializer = Self;
    fn into_deserializer(self) -> Self {
        self
    }
}

fn unexpected(v: &Value) -> Unexpected<'static> {
    match v {
        Value::Null => Unexpected::Unit,
        Value::Bool(_) => Unexpected::Other("a boolean"),
        Value::Number(_) => Unexpected::Other("a number"),
        Value::String(_) => Unexpected::Other("a string"),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

impl<'de> Deserializer<'de> for Node {
    type Error = Wrong;

    fn deserialize_any<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Wrong> {
        match self.0 {
            Value::Null => v.visit_unit(),
            Value::Bool(b) => v.visit_bool(b),
            Value::Number(n) => match (n.as_u64(), n.as_i64(), n.as_f64()) {
                (Some(u), _, _) => v.visit_u64(u),
                (None, Some(i), _) => v.visit_i64(i),
                (None, None, f) => v.visit_f64(f.unwrap_or(f64::NAN)),
            },
            Value::String(s) => v.visit_string(s),
            Value::Array(a) => {
                let mut seq = SeqDeserializer::new(a.into_iter().map(Node));
                let out = v.visit_seq(&mut seq)?;
                seq.end()?;
                Ok(out)
            }
            Value::Object(m) => v.visit_map(MapDeserializer::new(
                m.into_iter().map(|(k, x)| (k, Node(x))),
            )),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, Wrong> {
        match self.0 {
            Value::Null => v.visit_none(),
            _ => v.visit_some(self),
        }
    }

    /// Only an object: serde's derived structs would also read an array,
    /// by position.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: &'static [&'static str],
        v: V,
    ) -> Result<V::Value, Wrong> {
        match self.0 {
            Value::Object(_) => self.deserialize_any(v),
            other => Err(de::Error::invalid_type(unexpected(&other), &v)),
        }
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct newtype_struct seq tuple tuple_struct
        map enum identifier ignored_any
    }
}
