//! Bencode, the serialisation of BitTorrent (BEP 3, "bencoding").
//!
//! Decoding borrows from the input: byte strings are `&'a [u8]` slices of it, nothing is copied.
//! Every decoded [`Value`] keeps the exact span of input it came from ([`Value::raw`]), so the
//! info-hash is taken over the `info` dictionary's bytes as they appear in the file, never over a
//! re-encoding.
//!
//! Invariants and limits (everything here comes from a file, a tracker or a peer):
//! - nesting is at most [`MAX_DEPTH`] lists/dicts deep;
//! - a string's declared length is checked against the bytes left BEFORE slicing; nothing is
//!   ever allocated from a declared length (lists and dicts grow one decoded element at a time,
//!   and every element consumes at least two input bytes);
//! - integers are strict: `i0e`, `i-5e`, `i42e`; no leading zeros, no `-0`, no empty digits, and
//!   the value must fit `i64`;
//! - dictionary keys are byte strings; a key that appears twice is an error. Keys out of order
//!   are accepted (some real torrents have them) and sorted, since the raw span is what is hashed;
//! - [`decode`] rejects trailing bytes after the root value; [`decode_prefix`] allows them (for
//!   BEP 9 `data` messages, where the piece follows the dictionary).
//!
//! Encoding ([`Value::encode`]) is canonical: dictionaries are always kept sorted by key.

mod decode;
mod encode;

pub use decode::{decode, decode_prefix, DecodeError, DecodeErrorKind, MAX_DEPTH};

/// A decoded (or built) bencode value together with the input bytes it was decoded from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Value<'a> {
    /// What the value is.
    pub kind: Kind<'a>,
    /// The exact input span this value was decoded from; empty for values built in code.
    pub raw: &'a [u8],
}

/// The four bencode types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// An integer (`i42e`).
    Int(i64),
    /// A byte string (`4:spam`), borrowed from the input; not necessarily UTF-8.
    Bytes(&'a [u8]),
    /// A list (`l...e`).
    List(Vec<Value<'a>>),
    /// A dictionary (`d...e`).
    Dict(Dict<'a>),
}

/// A dictionary: entries sorted by key, keys unique (the canonical order of BEP 3).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dict<'a> {
    entries: Vec<(&'a [u8], Value<'a>)>,
}

impl<'a> Value<'a> {
    /// An integer built in code (no raw span).
    pub fn int(i: i64) -> Self {
        Value {
            kind: Kind::Int(i),
            raw: &[],
        }
    }

    /// A byte string built in code.
    pub fn bytes(b: &'a [u8]) -> Self {
        Value {
            kind: Kind::Bytes(b),
            raw: &[],
        }
    }

    /// A list built in code.
    pub fn list(items: Vec<Value<'a>>) -> Self {
        Value {
            kind: Kind::List(items),
            raw: &[],
        }
    }

    /// A dictionary built in code.
    pub fn dict(d: Dict<'a>) -> Self {
        Value {
            kind: Kind::Dict(d),
            raw: &[],
        }
    }

    /// The input bytes this value was decoded from (empty for built values).
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The integer, if this is one.
    pub fn as_int(&self) -> Option<i64> {
        match self.kind {
            Kind::Int(i) => Some(i),
            _ => None,
        }
    }

    /// The byte string, if this is one.
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.kind {
            Kind::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The byte string as UTF-8, if it is a byte string and valid UTF-8.
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }

    /// The list's items, if this is a list.
    pub fn as_list(&self) -> Option<&[Value<'a>]> {
        match &self.kind {
            Kind::List(l) => Some(l),
            _ => None,
        }
    }

    /// The dictionary, if this is one.
    pub fn as_dict(&self) -> Option<&Dict<'a>> {
        match &self.kind {
            Kind::Dict(d) => Some(d),
            _ => None,
        }
    }

    /// A short name of the type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            Kind::Int(_) => "integer",
            Kind::Bytes(_) => "string",
            Kind::List(_) => "list",
            Kind::Dict(_) => "dictionary",
        }
    }
}

impl<'a> Dict<'a> {
    /// An empty dictionary.
    pub fn new() -> Self {
        Self::default()
    }

    /// Inserts or replaces an entry, keeping the keys sorted.
    pub fn insert(&mut self, key: &'a [u8], value: Value<'a>) {
        match self.entries.binary_search_by(|(k, _)| (*k).cmp(key)) {
            Ok(i) => self.entries[i].1 = value,
            Err(i) => self.entries.insert(i, (key, value)),
        }
    }

    /// Builder form of [`Self::insert`].
    pub fn with(mut self, key: &'a [u8], value: Value<'a>) -> Self {
        self.insert(key, value);
        self
    }

    /// The value under `key`, if any.
    pub fn get(&self, key: &[u8]) -> Option<&Value<'a>> {
        self.entries
            .binary_search_by(|(k, _)| (*k).cmp(key))
            .ok()
            .map(|i| &self.entries[i].1)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], &Value<'a>)> {
        self.entries.iter().map(|(k, v)| (*k, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Builds from decoded entries in input order: sorts them; a repeated key is returned as
    /// the error.
    fn from_decoded(mut entries: Vec<(&'a [u8], Value<'a>)>) -> Result<Self, &'a [u8]> {
        if !entries.windows(2).all(|w| w[0].0 < w[1].0) {
            entries.sort_by(|a, b| a.0.cmp(b.0));
            if let Some(w) = entries.windows(2).find(|w| w[0].0 == w[1].0) {
                return Err(w[0].0);
            }
        }
        Ok(Dict { entries })
    }
}

#[cfg(test)]
mod proptests;
