//! The bencode decoder (BEP 3). See the parent module for the limits it enforces.

use super::{Dict, Kind, Value};

/// Deepest nesting of lists and dictionaries accepted. Real torrents need 4 or 5.
pub const MAX_DEPTH: usize = 64;

/// Most digits accepted in a string length or an integer (i64::MIN has 19 digits and a sign).
const MAX_DIGITS: usize = 20;

/// Malformed bencode: where (byte offset into the input) and what.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bencode error at byte {offset}: {kind}")]
pub struct DecodeError {
    /// Byte offset into the input where the problem was found.
    pub offset: usize,
    /// What the problem is.
    pub kind: DecodeErrorKind,
}

/// What was wrong with the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// The input ends in the middle of a value.
    #[error("input ends in the middle of a value")]
    UnexpectedEof,
    /// A byte that cannot start or continue a value here.
    #[error("unexpected byte 0x{0:02x}")]
    UnexpectedByte(u8),
    /// Lists and dictionaries nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// An integer with no digits, a leading zero, `-0`, too many digits, or out of `i64`'s
    /// range (the reason).
    #[error("invalid integer: {0}")]
    BadInteger(&'static str),
    /// A string length with a leading zero or too many digits (the reason).
    #[error("invalid string length: {0}")]
    BadStringLength(&'static str),
    /// A string whose declared length runs past the end of the input.
    #[error("string declares {declared} bytes but only {available} remain")]
    StringTooLong {
        /// The length the string declared.
        declared: u64,
        /// The bytes left in the input.
        available: usize,
    },
    /// A dictionary key that is not a byte string (the type's name).
    #[error("dictionary key is a {0}, not a string")]
    KeyNotString(&'static str),
    /// A dictionary key that appears twice (lossily as UTF-8).
    #[error("dictionary key {0:?} appears twice")]
    DuplicateKey(String),
    /// [`decode`] found this many bytes after the root value.
    #[error("{0} trailing bytes after the root value")]
    TrailingBytes(usize),
}

/// Decodes exactly one value that spans the whole input.
pub fn decode(input: &[u8]) -> Result<Value<'_>, DecodeError> {
    let (value, used) = decode_prefix(input)?;
    if used != input.len() {
        return Err(DecodeError {
            offset: used,
            kind: DecodeErrorKind::TrailingBytes(input.len() - used),
        });
    }
    Ok(value)
}

/// Decodes one value at the start of the input; returns it and the number of bytes it used.
pub fn decode_prefix(input: &[u8]) -> Result<(Value<'_>, usize), DecodeError> {
    let mut d = Decoder { input, pos: 0 };
    let v = d.value(0)?;
    Ok((v, d.pos))
}

struct Decoder<'a> {
    input: &'a [u8],
    pos: usize,
}

impl<'a> Decoder<'a> {
    fn err(&self, kind: DecodeErrorKind) -> DecodeError {
        DecodeError {
            offset: self.pos,
            kind,
        }
    }

    fn peek(&self) -> Result<u8, DecodeError> {
        self.input
            .get(self.pos)
            .copied()
            .ok_or_else(|| self.err(DecodeErrorKind::UnexpectedEof))
    }

    fn value(&mut self, depth: usize) -> Result<Value<'a>, DecodeError> {
        let start = self.pos;
        let kind = match self.peek()? {
            b'i' => Kind::Int(self.int()?),
            b'0'..=b'9' => Kind::Bytes(self.bytes()?),
            b'l' | b'd' if depth >= MAX_DEPTH => return Err(self.err(DecodeErrorKind::TooDeep)),
            b'l' => Kind::List(self.list(depth)?),
            b'd' => Kind::Dict(self.dict(depth)?),
            other => return Err(self.err(DecodeErrorKind::UnexpectedByte(other))),
        };
        Ok(Value {
            kind,
            raw: &self.input[start..self.pos],
        })
    }

    /// Reads ASCII digits up to `end`; returns them (possibly empty), leaving `pos` on `end`.
    fn digits_until(
        &mut self,
        end: u8,
        too_long: DecodeErrorKind,
    ) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        loop {
            let c = self.peek()?;
            if c == end {
                break;
            }
            if !c.is_ascii_digit() {
                return Err(self.err(DecodeErrorKind::UnexpectedByte(c)));
            }
            if self.pos - start >= MAX_DIGITS {
                return Err(self.err(too_long));
            }
            self.pos += 1;
        }
        Ok(&self.input[start..self.pos])
    }

    /// `i<digits>e`, strict.
    fn int(&mut self) -> Result<i64, DecodeError> {
        let start = self.pos;
        self.pos += 1; // 'i'
        let negative = self.peek()? == b'-';
        if negative {
            self.pos += 1;
        }
        let digits = self.digits_until(b'e', DecodeErrorKind::BadInteger("too many digits"))?;
        let bad = |what| DecodeError {
            offset: start,
            kind: DecodeErrorKind::BadInteger(what),
        };
        match digits {
            [] => return Err(bad("no digits")),
            [b'0'] if negative => return Err(bad("negative zero")),
            [b'0', _, ..] => return Err(bad("leading zero")),
            _ => {}
        }
        self.pos += 1; // 'e'
                       // Accumulate negatively so that i64::MIN fits.
        let mut n: i64 = 0;
        for &d in digits {
            n = n
                .checked_mul(10)
                .and_then(|n| n.checked_sub((d - b'0') as i64))
                .ok_or_else(|| bad("does not fit a 64-bit integer"))?;
        }
        if negative {
            Ok(n)
        } else {
            n.checked_neg()
                .ok_or_else(|| bad("does not fit a 64-bit integer"))
        }
    }

    /// `<len>:<bytes>`; the length is checked against the remaining input before slicing.
    fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let start = self.pos;
        let digits =
            self.digits_until(b':', DecodeErrorKind::BadStringLength("too many digits"))?;
        if digits.len() > 1 && digits[0] == b'0' {
            return Err(DecodeError {
                offset: start,
                kind: DecodeErrorKind::BadStringLength("leading zero"),
            });
        }
        // At most MAX_DIGITS (20) digits: compute in u128 to avoid any overflow question.
        let declared = digits
            .iter()
            .fold(0u128, |n, &d| n * 10 + (d - b'0') as u128);
        self.pos += 1; // ':'
        let available = self.input.len() - self.pos;
        if declared > available as u128 {
            return Err(DecodeError {
                offset: start,
                kind: DecodeErrorKind::StringTooLong {
                    declared: u64::try_from(declared).unwrap_or(u64::MAX),
                    available,
                },
            });
        }
        let len = declared as usize;
        let s = &self.input[self.pos..self.pos + len];
        self.pos += len;
        Ok(s)
    }

    fn list(&mut self, depth: usize) -> Result<Vec<Value<'a>>, DecodeError> {
        self.pos += 1; // 'l'
        let mut items = Vec::new();
        while self.peek()? != b'e' {
            items.push(self.value(depth + 1)?);
        }
        self.pos += 1;
        Ok(items)
    }

    fn dict(&mut self, depth: usize) -> Result<Dict<'a>, DecodeError> {
        let start = self.pos;
        self.pos += 1; // 'd'
        let mut entries = Vec::new();
        loop {
            let c = self.peek()?;
            if c == b'e' {
                break;
            }
            if !c.is_ascii_digit() {
                let kind = match c {
                    b'i' => DecodeErrorKind::KeyNotString("integer"),
                    b'l' => DecodeErrorKind::KeyNotString("list"),
                    b'd' => DecodeErrorKind::KeyNotString("dictionary"),
                    other => DecodeErrorKind::UnexpectedByte(other),
                };
                return Err(self.err(kind));
            }
            let key = self.bytes()?;
            let value = self.value(depth + 1)?;
            entries.push((key, value));
        }
        self.pos += 1;
        Dict::from_decoded(entries).map_err(|key| DecodeError {
            offset: start,
            kind: DecodeErrorKind::DuplicateKey(String::from_utf8_lossy(key).into_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind_of(input: &[u8]) -> DecodeErrorKind {
        decode(input).unwrap_err().kind
    }

    #[test]
    fn decodes_each_type_and_keeps_spans() {
        let input = b"d3:bari-7e3:fool4:spami0eee";
        let v = decode(input).unwrap();
        assert_eq!(v.raw(), &input[..]);
        let d = v.as_dict().unwrap();
        assert_eq!(d.get(b"bar").unwrap().as_int(), Some(-7));
        let foo = d.get(b"foo").unwrap();
        assert_eq!(foo.raw(), b"l4:spami0ee");
        let items = foo.as_list().unwrap();
        assert_eq!(items[0].as_str(), Some("spam"));
        assert_eq!(items[0].raw(), b"4:spam");
        assert_eq!(items[1].as_int(), Some(0));
        assert!(d.get(b"baz").is_none());
    }

    #[test]
    fn empty_string_list_dict() {
        assert_eq!(decode(b"0:").unwrap().as_bytes(), Some(&b""[..]));
        assert_eq!(decode(b"le").unwrap().as_list().map(|l| l.len()), Some(0));
        assert!(decode(b"de").unwrap().as_dict().unwrap().is_empty());
    }

    #[test]
    fn integer_extremes() {
        assert_eq!(
            decode(b"i9223372036854775807e").unwrap().as_int(),
            Some(i64::MAX)
        );
        assert_eq!(
            decode(b"i-9223372036854775808e").unwrap().as_int(),
            Some(i64::MIN)
        );
        assert!(matches!(
            kind_of(b"i9223372036854775808e"),
            DecodeErrorKind::BadInteger(_)
        ));
        assert!(matches!(
            kind_of(b"i-9223372036854775809e"),
            DecodeErrorKind::BadInteger(_)
        ));
        assert!(matches!(
            kind_of(b"i123456789012345678901234e"),
            DecodeErrorKind::BadInteger(_)
        ));
    }

    #[test]
    fn strict_integer_syntax() {
        assert_eq!(
            kind_of(b"i-0e"),
            DecodeErrorKind::BadInteger("negative zero")
        );
        assert_eq!(
            kind_of(b"i03e"),
            DecodeErrorKind::BadInteger("leading zero")
        );
        assert_eq!(
            kind_of(b"i-03e"),
            DecodeErrorKind::BadInteger("leading zero")
        );
        assert_eq!(kind_of(b"ie"), DecodeErrorKind::BadInteger("no digits"));
        assert_eq!(kind_of(b"i-e"), DecodeErrorKind::BadInteger("no digits"));
        assert_eq!(kind_of(b"i+3e"), DecodeErrorKind::UnexpectedByte(b'+'));
        assert_eq!(kind_of(b"i3.5e"), DecodeErrorKind::UnexpectedByte(b'.'));
        assert_eq!(kind_of(b"i3"), DecodeErrorKind::UnexpectedEof);
    }

    #[test]
    fn huge_declared_string_is_rejected_before_slicing() {
        let err = decode(b"99999999999999:abc").unwrap_err();
        assert_eq!(err.offset, 0);
        assert_eq!(
            err.kind,
            DecodeErrorKind::StringTooLong {
                declared: 99_999_999_999_999,
                available: 3
            }
        );
        // Longer than any u64: still a clean error.
        assert!(matches!(
            kind_of(b"99999999999999999999:x"),
            DecodeErrorKind::StringTooLong { .. }
        ));
        assert_eq!(
            kind_of(b"999999999999999999999:x"),
            DecodeErrorKind::BadStringLength("too many digits")
        );
        assert_eq!(
            kind_of(b"5:abc"),
            DecodeErrorKind::StringTooLong {
                declared: 5,
                available: 3
            }
        );
        assert_eq!(
            kind_of(b"03:abc"),
            DecodeErrorKind::BadStringLength("leading zero")
        );
        assert_eq!(kind_of(b"3"), DecodeErrorKind::UnexpectedEof);
        assert_eq!(kind_of(b"3x"), DecodeErrorKind::UnexpectedByte(b'x'));
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let mut deep = vec![b'l'; 10_000];
        deep.extend(vec![b'e'; 10_000]);
        let err = decode(&deep).unwrap_err();
        assert_eq!(err.kind, DecodeErrorKind::TooDeep);
        assert_eq!(err.offset, MAX_DEPTH);
        let mut dicts = b"d1:a".repeat(10_000);
        dicts.extend(vec![b'e'; 10_000]);
        assert_eq!(kind_of(&dicts), DecodeErrorKind::TooDeep);
        // Exactly MAX_DEPTH levels is fine.
        let mut ok = vec![b'l'; MAX_DEPTH];
        ok.extend(vec![b'e'; MAX_DEPTH]);
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn truncated_inputs() {
        for input in [
            &b""[..],
            b"l",
            b"d",
            b"d3:foo",
            b"li1e",
            b"d3:fooi1e",
            b"4:abc",
        ] {
            assert!(decode(input).is_err(), "{input:?} accepted");
        }
        assert_eq!(kind_of(b"l"), DecodeErrorKind::UnexpectedEof);
    }

    #[test]
    fn trailing_bytes_and_prefix() {
        let err = decode(b"i1ei2e").unwrap_err();
        assert_eq!(err.offset, 3);
        assert_eq!(err.kind, DecodeErrorKind::TrailingBytes(3));
        let (v, used) = decode_prefix(b"d1:ai1eeRAW").unwrap();
        assert_eq!(used, 8);
        assert_eq!(v.as_dict().unwrap().get(b"a").unwrap().as_int(), Some(1));
    }

    #[test]
    fn dict_keys() {
        assert_eq!(
            kind_of(b"di1ei2ee"),
            DecodeErrorKind::KeyNotString("integer")
        );
        assert_eq!(kind_of(b"dle1:ae"), DecodeErrorKind::KeyNotString("list"));
        assert_eq!(
            kind_of(b"d1:ai1e1:ai2ee"),
            DecodeErrorKind::DuplicateKey("a".into())
        );
        assert_eq!(
            kind_of(b"d1:bi1e1:ai2e1:bi3ee"),
            DecodeErrorKind::DuplicateKey("b".into())
        );
        // Unsorted keys are accepted, sorted, and the raw span is untouched.
        let input = b"d1:bi2e1:ai1ee";
        let v = decode(input).unwrap();
        let keys: Vec<_> = v.as_dict().unwrap().iter().map(|(k, _)| k).collect();
        assert_eq!(keys, vec![&b"a"[..], &b"b"[..]]);
        assert_eq!(v.raw(), &input[..]);
    }

    #[test]
    fn unexpected_bytes() {
        assert_eq!(kind_of(b"x"), DecodeErrorKind::UnexpectedByte(b'x'));
        assert_eq!(kind_of(b"lxe"), DecodeErrorKind::UnexpectedByte(b'x'));
        let err = decode(b"li1exe").unwrap_err();
        assert_eq!(err.offset, 4);
    }
}
