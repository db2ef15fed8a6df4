//! The one JSON rule serde's derive does not keep (FORMAT.md "JSON"): no object of the JSON a
//! verifier reads (a bundle manifest, an attestation, a known head) holds a key twice.
//!
//! A derived struct refuses a known field named twice but ignores an unknown one named twice, and
//! `serde_json::Value` keeps the last of two: a verifier that keeps the first would read another
//! document from the same bytes. So the bytes are walked once before they are parsed.

use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

/// Err naming the key when any object in `bytes` holds a key twice; other JSON errors are left
/// to the typed parse that follows.
pub fn no_duplicate_keys(bytes: &[u8]) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    match Walk.deserialize(&mut de) {
        Ok(()) => Ok(()),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(e.to_string()),
        Err(_) => Ok(()),
    }
}

const DUPLICATE: &str = "duplicate key";

#[derive(Clone, Copy)]
struct Walk;

impl<'de> DeserializeSeed<'de> for Walk {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element_seed(Walk)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            map.next_value_seed(Walk)?;
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!(
                    "{DUPLICATE} {key:?} in one object"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::no_duplicate_keys;

    #[test]
    fn a_key_twice_at_any_depth_is_refused() {
        assert!(no_duplicate_keys(br#"{"a":1,"b":[{"c":1}]}"#).is_ok());
        assert!(no_duplicate_keys(br#"{"a":1,"a":1}"#).is_err());
        assert!(no_duplicate_keys(br#"{"a":{"x":[{"y":1,"y":2}]}}"#).is_err());
        // Other damage is the typed parse's to report.
        assert!(no_duplicate_keys(b"{\"a\":").is_ok());
    }
}
