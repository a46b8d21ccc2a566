//! The harness's JSON reader, over `serde_json`: the management endpoint's
//! answers and the mock's `/_mock/stats`.
//!
//! [`Json::parse`] rejects what is not JSON, and also an object with a
//! repeated key (serde_json alone would keep the last one). Objects keep
//! their fields in document order (`preserve_order`), so tests can check
//! the order. The accessors panic with the value in the message when the
//! shape is not the expected one, which is what a test wants; use
//! [`Json::value`] where a wrong shape is an `Err` instead.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// A parsed JSON value: a `serde_json::Value` with panicking accessors.
#[derive(Debug, Clone, PartialEq)]
#[repr(transparent)]
pub struct Json(Value);

impl Json {
    pub fn parse(text: &str) -> Result<Json, String> {
        let strict: Strict = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(Json(strict.0))
    }

    fn wrap(value: &Value) -> &Json {
        // SAFETY: Json is a repr(transparent) wrapper of Value, so both have
        // one layout and the reference keeps the borrowed lifetime.
        unsafe { &*(value as *const Value).cast::<Json>() }
    }

    fn wrap_all(values: &[Value]) -> &[Json] {
        // SAFETY: as in `wrap`, element by element: the slices have one
        // layout and one length.
        unsafe { &*(values as *const [Value] as *const [Json]) }
    }

    /// The underlying value, to match on.
    pub fn value(&self) -> &Value {
        &self.0
    }

    /// The field `key` of an object, if present.
    pub fn opt(&self, key: &str) -> Option<&Json> {
        match &self.0 {
            Value::Object(fields) => fields.get(key).map(Json::wrap),
            other => panic!("not an object (looking for {key:?}): {other:?}"),
        }
    }

    pub fn get(&self, key: &str) -> &Json {
        self.opt(key)
            .unwrap_or_else(|| panic!("no field {key:?} in {self:?}"))
    }

    /// An object's keys, in document order.
    pub fn keys(&self) -> Vec<&str> {
        match &self.0 {
            Value::Object(fields) => fields.keys().map(String::as_str).collect(),
            other => panic!("not an object: {other:?}"),
        }
    }

    pub fn as_u64(&self) -> u64 {
        match &self.0 {
            Value::Number(n) => n
                .as_u64()
                .unwrap_or_else(|| panic!("not a non-negative integer: {n}")),
            other => panic!("not a number: {other:?}"),
        }
    }

    pub fn as_str(&self) -> &str {
        match &self.0 {
            Value::String(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    pub fn as_bool(&self) -> bool {
        match &self.0 {
            Value::Bool(b) => *b,
            other => panic!("not a boolean: {other:?}"),
        }
    }

    pub fn as_arr(&self) -> &[Json] {
        match &self.0 {
            Value::Array(items) => Json::wrap_all(items),
            other => panic!("not an array: {other:?}"),
        }
    }

    pub fn u64(&self, key: &str) -> u64 {
        self.get(key).as_u64()
    }

    pub fn str(&self, key: &str) -> &str {
        self.get(key).as_str()
    }

    pub fn bool(&self, key: &str) -> bool {
        self.get(key).as_bool()
    }

    pub fn arr(&self, key: &str) -> &[Json] {
        self.get(key).as_arr()
    }
}

/// A `Value` read with every object's keys checked to be distinct.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
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
        Ok(Value::String(s.to_string()))
    }

    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if fields.contains_key(&key) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}
