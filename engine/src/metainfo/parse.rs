//! Field-by-field parsing of the metainfo dictionaries (BEP 3, 12, 19, 27, 47).

use super::{
    safe_relative_path, FileEntry, Info, MetainfoError, MAX_PIECE_LENGTH, MAX_TOTAL_LENGTH,
};
use crate::bencode::{Dict, Value};
use crate::types::Lengths;

fn wrong_type(field: &str, expected: &'static str, found: &Value<'_>) -> MetainfoError {
    MetainfoError::WrongType {
        field: field.to_string(),
        expected,
        found: found.type_name(),
    }
}

fn bad_value(field: &str, problem: impl Into<String>) -> MetainfoError {
    MetainfoError::BadValue {
        field: field.to_string(),
        problem: problem.into(),
    }
}

fn required<'d, 'a>(d: &'d Dict<'a>, key: &str) -> Result<&'d Value<'a>, MetainfoError> {
    d.get(key.as_bytes())
        .ok_or_else(|| MetainfoError::Missing(key.to_string()))
}

fn int_field(v: &Value<'_>, field: &str) -> Result<i64, MetainfoError> {
    v.as_int().ok_or_else(|| wrong_type(field, "integer", v))
}

/// A length: non-negative and at most [`MAX_TOTAL_LENGTH`].
fn length_field(v: &Value<'_>, field: &str) -> Result<u64, MetainfoError> {
    let n = int_field(v, field)?;
    match u64::try_from(n) {
        Err(_) => Err(bad_value(field, format!("negative length {n}"))),
        Ok(n) if n > MAX_TOTAL_LENGTH => Err(bad_value(
            field,
            format!("length {n} exceeds the 2^50-byte limit"),
        )),
        Ok(n) => Ok(n),
    }
}

/// Text from a string that must be one: prefers the `<key>.utf-8` variant when it is valid
/// UTF-8, else the plain key, decoded lossily (invalid sequences become U+FFFD).
fn string_pref_utf8(d: &Dict<'_>, key: &str, field: &str) -> Result<String, MetainfoError> {
    let alt = format!("{key}.utf-8");
    if let Some(s) = d.get(alt.as_bytes()).and_then(|v| v.as_str()) {
        return Ok(s.to_string());
    }
    let v = required(d, key)?;
    let b = v.as_bytes().ok_or_else(|| wrong_type(field, "string", v))?;
    Ok(String::from_utf8_lossy(b).into_owned())
}

/// Parses the `info` dictionary (BEP 3).
pub(super) fn info(v: &Value<'_>) -> Result<Info, MetainfoError> {
    let d = v
        .as_dict()
        .ok_or_else(|| wrong_type("info", "dictionary", v))?;
    let name = string_pref_utf8(d, "name", "name")?;
    safe_relative_path([&name])?;

    let pl = required(d, "piece length")?;
    let pl_raw = int_field(pl, "piece length")?;
    let piece_length = u32::try_from(pl_raw)
        .ok()
        .filter(|n| (1..=MAX_PIECE_LENGTH).contains(n))
        .ok_or_else(|| {
            bad_value(
                "piece length",
                format!("{pl_raw} is not between 1 and {MAX_PIECE_LENGTH}"),
            )
        })?;

    let pieces = match d.get(b"pieces") {
        Some(p) => p
            .as_bytes()
            .ok_or_else(|| wrong_type("pieces", "string", p))?,
        // BEP 52 v2-only torrents have `file tree` and `meta version` but no `pieces`.
        None if d.get(b"meta version").is_some() => return Err(MetainfoError::V2Only),
        None => return Err(MetainfoError::Missing("pieces".into())),
    };
    if pieces.len() % 20 != 0 {
        return Err(bad_value(
            "pieces",
            format!("length {} is not a multiple of 20", pieces.len()),
        ));
    }

    let (files, multi_file) = match (d.get(b"length"), d.get(b"files")) {
        (Some(len), None) => (single_file(&name, len)?, false),
        (None, Some(list)) => (file_list(list)?, true),
        (Some(_), Some(_)) => {
            return Err(bad_value("info", "has both `length` and `files`"));
        }
        (None, None) => return Err(MetainfoError::Missing("length` or `files".into())),
    };
    let total = files.last().map_or(0, |f| f.offset + f.length);
    let lengths =
        Lengths::new(total, piece_length).map_err(|e| bad_value("info", e.to_string()))?;
    if pieces.len() / 20 != lengths.num_pieces() as usize {
        return Err(bad_value(
            "pieces",
            format!(
                "has {} hashes but {total} bytes in {piece_length}-byte pieces need {}",
                pieces.len() / 20,
                lengths.num_pieces()
            ),
        ));
    }
    Ok(Info {
        name,
        piece_length,
        pieces: pieces
            .chunks_exact(20)
            // INVARIANT: chunks_exact(20) yields 20-byte slices.
            .map(|c| <[u8; 20]>::try_from(c).unwrap())
            .collect(),
        files,
        multi_file,
        // BEP 27: `private=1` in the info dictionary.
        private: d.get(b"private").and_then(|v| v.as_int()) == Some(1),
        lengths,
    })
}

fn single_file(name: &str, len: &Value<'_>) -> Result<Vec<FileEntry>, MetainfoError> {
    Ok(vec![FileEntry {
        path: vec![name.to_string()],
        length: length_field(len, "length")?,
        padding: false,
        offset: 0,
    }])
}

/// The multi-file `files` list: lengths, paths, BEP 47 padding, offsets, then the whole tree
/// is checked for duplicate paths and files that are also directories.
fn file_list(v: &Value<'_>) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = v.as_list().ok_or_else(|| wrong_type("files", "list", v))?;
    if list.is_empty() {
        return Err(bad_value("files", "the list is empty"));
    }
    let mut files = Vec::with_capacity(list.len());
    let mut offset = 0u64;
    for (i, item) in list.iter().enumerate() {
        let field = format!("files[{i}]");
        let d = item
            .as_dict()
            .ok_or_else(|| wrong_type(&field, "dictionary", item))?;
        let length = length_field(required(d, "length")?, &format!("{field}.length"))?;
        let path = file_path(d, &field)?;
        let padding = d
            .get(b"attr")
            .and_then(|a| a.as_bytes())
            .is_some_and(|a| a.contains(&b'p'));
        files.push(FileEntry {
            path,
            length,
            padding,
            offset,
        });
        offset = offset
            .checked_add(length)
            .filter(|t| *t <= MAX_TOTAL_LENGTH)
            .ok_or_else(|| bad_value("files", "total length exceeds the 2^50-byte limit"))?;
    }
    check_tree(&files)?;
    Ok(files)
}

/// A file's `path` (or `path.utf-8`) list, checked for safety.
fn file_path(d: &Dict<'_>, field: &str) -> Result<Vec<String>, MetainfoError> {
    let utf8 = d
        .get(b"path.utf-8")
        .and_then(|v| v.as_list())
        .and_then(|l| {
            l.iter()
                .map(|c| c.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
        });
    let path = match utf8 {
        Some(p) => p,
        None => {
            let field = format!("{field}.path");
            let v = required(d, "path")?;
            let list = v.as_list().ok_or_else(|| wrong_type(&field, "list", v))?;
            list.iter()
                .map(|c| {
                    c.as_bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned())
                        .ok_or_else(|| wrong_type(&field, "list of strings", v))
                })
                .collect::<Result<Vec<String>, _>>()?
        }
    };
    safe_relative_path(&path)?;
    Ok(path)
}

/// Rejects two files with one path, and a file whose path is a directory of another file.
/// Padding files are left out: BEP 47 clients name them `.pad/<size>`, repeated freely.
fn check_tree(files: &[FileEntry]) -> Result<(), MetainfoError> {
    let mut paths: Vec<&[String]> = files
        .iter()
        .filter(|f| !f.padding)
        .map(|f| f.path.as_slice())
        .collect();
    paths.sort_unstable();
    // In lexicographic order, if `a` is a prefix of `c` then every `b` between them also
    // starts with `a`: checking neighbours finds every prefix pair.
    for w in paths.windows(2) {
        if w[0] == w[1] {
            return Err(MetainfoError::DuplicatePath(w[0].join("/")));
        }
        if w[1].starts_with(w[0]) {
            return Err(MetainfoError::FileIsDirectory {
                file: w[0].join("/"),
                other: w[1].join("/"),
            });
        }
    }
    Ok(())
}

/// Tracker tiers: BEP 12 `announce-list` when present and non-empty, else `announce`.
pub(super) fn trackers(root: &Dict<'_>) -> Vec<Vec<String>> {
    let tiers: Vec<Vec<String>> = root
        .get(b"announce-list")
        .and_then(|v| v.as_list())
        .unwrap_or_default()
        .iter()
        .filter_map(|tier| tier.as_list())
        .map(|tier| {
            tier.iter()
                .filter_map(|u| u.as_str())
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .filter(|tier| !tier.is_empty())
        .collect();
    if !tiers.is_empty() {
        return tiers;
    }
    match text(root, b"announce") {
        Some(url) => vec![vec![url]],
        None => Vec::new(),
    }
}

/// BEP 19 `url-list`: one string or a list of strings.
pub(super) fn url_list(root: &Dict<'_>) -> Vec<String> {
    let Some(v) = root.get(b"url-list") else {
        return Vec::new();
    };
    let one = v.as_str().map(|s| vec![s]);
    let many = || {
        v.as_list()
            .map(|l| l.iter().filter_map(|u| u.as_str()).collect::<Vec<_>>())
    };
    one.or_else(many)
        .unwrap_or_default()
        .into_iter()
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .collect()
}

/// An optional non-empty UTF-8 string field (`comment`, `created by`, `announce`), preferring
/// `<key>.utf-8`.
pub(super) fn text(root: &Dict<'_>, key: &[u8]) -> Option<String> {
    let mut alt = key.to_vec();
    alt.extend_from_slice(b".utf-8");
    root.get(&alt)
        .and_then(|v| v.as_str())
        .or_else(|| root.get(key).and_then(|v| v.as_str()))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}
