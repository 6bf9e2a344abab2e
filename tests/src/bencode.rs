//! A small bencode reader (BEP 3) for the kit: enough to read the torrents the real tools make,
//! compute an info-hash and rewrite the announce URL. Deliberately independent of the engine's
//! own `bencode` module, so the interop tests do not trust the code they test.
//!
//! Every node keeps its raw bytes, so the info-hash is the SHA-1 of exactly what the file holds.
//! Limits: nesting depth [`MAX_DEPTH`]; lengths are checked against the input before slicing.

use anyhow::{bail, ensure, Context, Result};

/// Deepest nesting accepted.
pub const MAX_DEPTH: usize = 32;

/// A decoded value and the raw bytes it was decoded from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node<'a> {
    pub raw: &'a [u8],
    pub value: Value<'a>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Int(i64),
    Bytes(&'a [u8]),
    List(Vec<Node<'a>>),
    /// Keys in file order (BEP 3 requires them sorted; the kit does not insist).
    Dict(Vec<(&'a [u8], Node<'a>)>),
}

impl<'a> Node<'a> {
    pub fn get(&self, key: &str) -> Option<&Node<'a>> {
        match &self.value {
            Value::Dict(entries) => entries
                .iter()
                .find(|(k, _)| *k == key.as_bytes())
                .map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn as_int(&self) -> Option<i64> {
        match self.value {
            Value::Int(i) => Some(i),
            _ => None,
        }
    }
    pub fn as_bytes(&self) -> Option<&'a [u8]> {
        match self.value {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&'a str> {
        self.as_bytes().and_then(|b| std::str::from_utf8(b).ok())
    }
    pub fn as_list(&self) -> Option<&[Node<'a>]> {
        match &self.value {
            Value::List(l) => Some(l),
            _ => None,
        }
    }
    pub fn as_dict(&self) -> Option<&[(&'a [u8], Node<'a>)]> {
        match &self.value {
            Value::Dict(d) => Some(d),
            _ => None,
        }
    }
}

/// Decodes one complete value; trailing bytes are an error.
pub fn decode(input: &[u8]) -> Result<Node<'_>> {
    let (node, end) = decode_at(input, 0, 0)?;
    ensure!(
        end == input.len(),
        "{} trailing bytes after the value",
        input.len() - end
    );
    Ok(node)
}

fn decode_at(input: &[u8], pos: usize, depth: usize) -> Result<(Node<'_>, usize)> {
    ensure!(depth <= MAX_DEPTH, "nesting deeper than {MAX_DEPTH}");
    let first = *input.get(pos).context("unexpected end of input")?;
    let (value, end) = match first {
        b'i' => {
            let stop = find(input, pos + 1, b'e')?;
            (Value::Int(parse_int(&input[pos + 1..stop])?), stop + 1)
        }
        b'0'..=b'9' => {
            let colon = find(input, pos, b':')?;
            let len = parse_int(&input[pos..colon])?;
            let start = colon + 1;
            let len = usize::try_from(len).context("negative string length")?;
            ensure!(
                len <= input.len() - start,
                "string of {len} bytes runs past the input"
            );
            (Value::Bytes(&input[start..start + len]), start + len)
        }
        b'l' => {
            let mut items = Vec::new();
            let mut p = pos + 1;
            while *input.get(p).context("unterminated list")? != b'e' {
                let (n, next) = decode_at(input, p, depth + 1)?;
                items.push(n);
                p = next;
            }
            (Value::List(items), p + 1)
        }
        b'd' => {
            let mut entries = Vec::new();
            let mut p = pos + 1;
            while *input.get(p).context("unterminated dict")? != b'e' {
                let (k, next) = decode_at(input, p, depth + 1)?;
                let key = k.as_bytes().context("dict key is not a string")?;
                let (v, next) = decode_at(input, next, depth + 1)?;
                entries.push((key, v));
                p = next;
            }
            (Value::Dict(entries), p + 1)
        }
        other => bail!("unexpected byte {other:#04x} at offset {pos}"),
    };
    Ok((
        Node {
            raw: &input[pos..end],
            value,
        },
        end,
    ))
}

fn find(input: &[u8], from: usize, byte: u8) -> Result<usize> {
    input[from.min(input.len())..]
        .iter()
        .position(|&b| b == byte)
        .map(|i| from + i)
        .with_context(|| format!("missing {:?}", byte as char))
}

fn parse_int(digits: &[u8]) -> Result<i64> {
    let s = std::str::from_utf8(digits).context("non-ASCII integer")?;
    ensure!(!s.is_empty(), "empty integer");
    ensure!(
        s == "0" || !(s.starts_with('0') || s.starts_with("-0")),
        "integer {s:?} has a leading zero"
    );
    s.parse().with_context(|| format!("bad integer {s:?}"))
}

/// Appends a bencoded byte string.
pub fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(b.len().to_string().as_bytes());
    out.push(b':');
    out.extend_from_slice(b);
}

/// Re-encodes a top-level dict with `announce` set to `url` (or removed for `None`) and any
/// `announce-list` dropped. Other values are copied byte for byte, so the info-hash is unchanged.
pub fn with_announce(torrent: &[u8], url: Option<&str>) -> Result<Vec<u8>> {
    let root = decode(torrent)?;
    let entries = root.as_dict().context("torrent is not a dict")?;
    let mut kept: Vec<(&[u8], &[u8])> = entries
        .iter()
        .filter(|(k, _)| *k != b"announce" && *k != b"announce-list")
        .map(|(k, v)| (*k, v.raw))
        .collect();
    let mut url_value = Vec::new();
    if let Some(u) = url {
        put_bytes(&mut url_value, u.as_bytes());
        kept.push((b"announce", &url_value));
    }
    kept.sort_by(|a, b| a.0.cmp(b.0));
    let mut out = vec![b'd'];
    for (k, v) in kept {
        put_bytes(&mut out, k);
        out.extend_from_slice(v);
    }
    out.push(b'e');
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_nested_values_with_raw_spans() {
        let input = b"d3:cowi-3e4:infod1:ai0ee4:listl1:xi7eee";
        let n = decode(input).unwrap();
        assert_eq!(n.get("cow").and_then(Node::as_int), Some(-3));
        assert_eq!(n.get("info").unwrap().raw, b"d1:ai0ee");
        let list = n.get("list").and_then(Node::as_list).unwrap();
        assert_eq!(list[0].as_str(), Some("x"));
        assert_eq!(list[1].as_int(), Some(7));
        assert!(n.get("missing").is_none());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"",
            b"i12",
            b"i-0e",
            b"i03e",
            b"ie",
            b"5:abc",
            b"99999999999999999999:a",
            b"-1:a",
            b"l",
            b"d1:a",
            b"di1ei2ee",
            b"x",
            b"i1ei2e",
        ];
        for c in cases {
            assert!(
                decode(c).is_err(),
                "{:?} should fail",
                String::from_utf8_lossy(c)
            );
        }
        let deep = [vec![b'l'; MAX_DEPTH + 2], vec![b'e'; MAX_DEPTH + 2]].concat();
        assert!(decode(&deep).is_err());
    }

    #[test]
    fn announce_rewrite_keeps_other_bytes() {
        let t = b"d8:announce3:old13:announce-listll3:oldee4:infod1:ai1eee";
        let out = with_announce(t, Some("http://127.0.0.1:1/a")).unwrap();
        let n = decode(&out).unwrap();
        assert_eq!(
            n.get("announce").and_then(Node::as_str),
            Some("http://127.0.0.1:1/a")
        );
        assert!(n.get("announce-list").is_none());
        assert_eq!(n.get("info").unwrap().raw, b"d1:ai1ee");
        let none = with_announce(t, None).unwrap();
        assert_eq!(none, b"d4:infod1:ai1eee");
    }
}
