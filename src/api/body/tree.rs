//! A JSON body read into a `serde_json::Value`, refusing an object that
//! gives a key twice, at any depth. `Value` itself keeps only the last of
//! a repeated key, so `{"reason": "a", "reason": "b"}` would reach the
//! typed read with one `reason` (its `duplicate_field` never fires) while
//! a WAF or a log reading the first value sees another than the one acted
//! on and audited.

use super::name;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use std::cell::RefCell;
use std::fmt;

/// Why a body is not a tree of JSON values.
pub(super) enum Failure {
    /// Not JSON: serde_json's error names a position, never the text.
    Syntax(serde_json::Error),
    /// The path of a key given twice (`helpdesk.name`); `None` when a key
    /// on it is not a plain name (it could be a value typed as a key).
    Twice(Option<String>),
}

pub(super) fn read(body: &[u8]) -> Result<Value, Failure> {
    let twice = RefCell::new(None);
    let seed = Tree {
        at: At::Top,
        twice: &twice,
    };
    let mut de = serde_json::Deserializer::from_slice(body);
    let read = seed.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    read.map_err(|e| match twice.into_inner() {
        Some(at) => Failure::Twice(at),
        None => Failure::Syntax(e),
    })
}

/// Where a value is in the body, rendered only for a problem.
#[derive(Clone, Copy)]
enum At<'a> {
    Top,
    Key(&'a At<'a>, &'a str),
    Index(&'a At<'a>, usize),
}

impl At<'_> {
    /// `a.b[2].c`, if every key on the way is a plain name.
    fn path(&self) -> Option<String> {
        Some(match *self {
            Self::Top => String::new(),
            Self::Index(up, i) => format!("{}[{i}]", up.path()?),
            Self::Key(up, key) => match (up.path()?, name(key)?) {
                (up, key) if up.is_empty() => key.to_owned(),
                (up, key) => format!("{up}.{key}"),
            },
        })
    }
}

/// Reads one value at `at`; records the path of a repeated key in `twice`
/// (the error serde_json returns carries only its own message).
struct Tree<'a> {
    at: At<'a>,
    twice: &'a RefCell<Option<Option<String>>>,
}

impl<'de> DeserializeSeed<'de> for Tree<'_> {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Tree<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::from(n))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = items.next_element_seed(Tree {
            at: At::Index(&self.at, out.len()),
            twice: self.twice,
        })? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut entries: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = entries.next_key::<String>()? {
            let at = At::Key(&self.at, &key);
            if out.contains_key(&key) {
                *self.twice.borrow_mut() = Some(at.path());
                return Err(de::Error::custom("a key is given more than once"));
            }
            let value = entries.next_value_seed(Tree {
                at,
                twice: self.twice,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}
