//! [`Capabilities`]: what an actor system offers (and what a create asks for), as named,
//! typed values — Thespian's capabilities dictionary, in a form that crosses the wire.
//!
//! Each value is stored encoded with its type's name, like a message, so that a reader asks
//! for the type it expects and gets `None` for a missing key or another type, never garbage:
//!
//! ```
//! use greenroom_protocol::Capabilities;
//!
//! let caps = Capabilities::new().with("gpu", &true)?.with("cores", &8u32)?;
//! assert_eq!(caps.get::<u32>("cores"), Some(8));
//! assert_eq!(caps.get::<bool>("gpu"), Some(true));
//! assert_eq!(caps.get::<String>("gpu"), None, "another type");
//! assert_eq!(caps.get::<u32>("ram"), None, "not there");
//! # Ok::<(), greenroom_protocol::ProtocolError>(())
//! ```

use std::collections::BTreeMap;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::{Payload, ProtocolError};

/// Named, typed values: a system's capabilities, or a create's requirements.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities(BTreeMap<String, Payload>);

impl Capabilities {
    /// No capabilities.
    pub fn new() -> Self {
        Capabilities::default()
    }

    /// This map with `key` set to `value` (builder form of [`Capabilities::set`]).
    pub fn with<T: Serialize>(mut self, key: &str, value: &T) -> Result<Self, ProtocolError> {
        self.set(key, value)?;
        Ok(self)
    }

    /// Sets `key` to `value`, replacing any value it had (of any type).
    pub fn set<T: Serialize>(&mut self, key: &str, value: &T) -> Result<(), ProtocolError> {
        let payload = encode_value(value)?;
        self.0.insert(key.to_owned(), payload);
        Ok(())
    }

    /// Sets `key` to an encoded value, or removes it (`None`).
    pub fn set_encoded(&mut self, key: &str, value: Option<Payload>) {
        match value {
            Some(v) => self.0.insert(key.to_owned(), v),
            None => self.0.remove(key),
        };
    }

    /// The value of `key` as a `T`: `None` if the key is missing or holds another type.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        let value = self.0.get(key)?;
        if value.tag != std::any::type_name::<T>() {
            return None;
        }
        postcard::from_bytes(&value.bytes).ok()
    }

    /// Whether `key` is set (to any type).
    pub fn contains(&self, key: &str) -> bool {
        self.0.contains_key(key)
    }

    /// The type name of `key`'s value, if set.
    pub fn type_of(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| &*v.tag)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// How many keys are set.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no key is set.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Encodes one capability value with its type's name.
pub fn encode_value<T: Serialize>(value: &T) -> Result<Payload, ProtocolError> {
    let bytes = postcard::to_allocvec(value).map_err(|source| ProtocolError::Encode {
        what: "a capability value",
        source,
    })?;
    Ok(Payload {
        tag: std::any::type_name::<T>().into(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_by_type_and_survive_the_wire() {
        let mut caps = Capabilities::new()
            .with("name", &"lab-3".to_string())
            .unwrap()
            .with("cores", &16u32)
            .unwrap();
        caps.set("cores", &32u64).unwrap();
        assert_eq!(caps.get::<u32>("cores"), None, "replaced by a u64");
        assert_eq!(caps.get::<u64>("cores"), Some(32));
        let wire = postcard::to_allocvec(&caps).unwrap();
        let back: Capabilities = postcard::from_bytes(&wire).unwrap();
        assert_eq!(back, caps);
        assert_eq!(back.get::<String>("name").as_deref(), Some("lab-3"));
        assert_eq!(back.keys().collect::<Vec<_>>(), ["cores", "name"]);
        let mut back = back;
        back.set_encoded("name", None);
        assert!(!back.contains("name"));
        assert_eq!(back.type_of("cores"), Some("u64"));
    }
}
