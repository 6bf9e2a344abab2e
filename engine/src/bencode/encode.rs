//! Canonical bencode encoding (BEP 3): dictionaries in sorted key order, shortest integers.

use super::{Kind, Value};

impl Value<'_> {
    /// The canonical encoding of this value (its `raw` span is ignored).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }

    /// Appends the canonical encoding to `out`.
    pub fn encode_to(&self, out: &mut Vec<u8>) {
        match &self.kind {
            Kind::Int(i) => {
                out.push(b'i');
                out.extend_from_slice(i.to_string().as_bytes());
                out.push(b'e');
            }
            Kind::Bytes(b) => encode_bytes(b, out),
            Kind::List(items) => {
                out.push(b'l');
                for item in items {
                    item.encode_to(out);
                }
                out.push(b'e');
            }
            Kind::Dict(d) => {
                out.push(b'd');
                // Dict keeps its entries sorted and unique, so this order is canonical.
                for (k, v) in d.iter() {
                    encode_bytes(k, out);
                    v.encode_to(out);
                }
                out.push(b'e');
            }
        }
    }
}

/// Appends `<len>:<bytes>`.
pub(crate) fn encode_bytes(b: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::super::{decode, Dict, Value};

    #[test]
    fn built_dict_encodes_sorted() {
        let d = Dict::new()
            .with(b"zeta", Value::int(-3))
            .with(b"alpha", Value::bytes(b"x"))
            .with(b"mid", Value::list(vec![Value::int(0), Value::bytes(b"")]));
        let enc = Value::dict(d).encode();
        assert_eq!(enc, b"d5:alpha1:x3:midli0e0:e4:zetai-3ee".to_vec());
    }

    #[test]
    fn insert_replaces_existing_key() {
        let mut d = Dict::new();
        d.insert(b"k", Value::int(1));
        d.insert(b"k", Value::int(2));
        assert_eq!(d.len(), 1);
        assert_eq!(Value::dict(d).encode(), b"d1:ki2ee".to_vec());
    }

    #[test]
    fn canonical_input_round_trips_byte_for_byte() {
        let input = b"d4:infod6:lengthi5e4:name1:a12:piece lengthi16384e6:pieces0:e1:xli-1ei9223372036854775807eee";
        let v = decode(input).unwrap();
        assert_eq!(v.encode(), input.to_vec());
    }

    #[test]
    fn unsorted_input_re_encodes_sorted() {
        let v = decode(b"d1:bi2e1:ai1ee").unwrap();
        assert_eq!(v.encode(), b"d1:ai1e1:bi2ee".to_vec());
    }
}
