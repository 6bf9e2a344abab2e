//! Metainfo parser tests over byte fixtures: one good torrent of each shape, and one test for
//! each kind of bad input.

use super::*;
use sha1::{Digest, Sha1};

/// `<len>:<bytes>`
fn s(b: &[u8]) -> Vec<u8> {
    let mut out = format!("{}:", b.len()).into_bytes();
    out.extend_from_slice(b);
    out
}

/// A `pieces` value with `n` distinct hashes.
fn pieces(n: usize) -> Vec<u8> {
    let raw: Vec<u8> = (0..n * 20).map(|i| (i % 251) as u8).collect();
    s(&raw)
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// A single-file info dict: `len` bytes in 16 KiB pieces.
fn single_info(name: &[u8], len: u64) -> Vec<u8> {
    let n = len.div_ceil(16384) as usize;
    cat(&[
        b"d6:lengthi",
        len.to_string().as_bytes(),
        b"e4:name",
        &s(name),
        b"12:piece lengthi16384e6:pieces",
        &pieces(n),
        b"e",
    ])
}

/// One `files` entry.
fn file(len: i64, path: &[&[u8]]) -> Vec<u8> {
    let comps: Vec<u8> = path.iter().flat_map(|c| s(c)).collect();
    cat(&[
        b"d6:lengthi",
        len.to_string().as_bytes(),
        b"e4:pathl",
        &comps,
        b"ee",
    ])
}

/// A BEP 47 padding file entry with the given `attr`.
fn padding_file(attr: &[u8]) -> Vec<u8> {
    let mut f = file(16383, &[b".pad", b"16383"]);
    f.pop();
    cat(&[&f, b"4:attr", &s(attr), b"e"])
}

fn multi_info(files: &[Vec<u8>], num_pieces: usize) -> Vec<u8> {
    cat(&[
        b"d5:filesl",
        &files.concat(),
        b"e4:name4:root12:piece lengthi16384e6:pieces",
        &pieces(num_pieces),
        b"e",
    ])
}

fn torrent(info: &[u8]) -> Vec<u8> {
    cat(&[b"d8:announce16:http://t.test/an4:info", info, b"e"])
}

fn err(bytes: &[u8]) -> MetainfoError {
    Metainfo::from_bytes(bytes).unwrap_err()
}

#[test]
fn single_file_torrent() {
    let info = single_info(b"a.bin", 40_000);
    let bytes = torrent(&info);
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.info_hash.0, <[u8; 20]>::from(Sha1::digest(&info)));
    assert_eq!(m.info_bytes, info);
    assert_eq!(m.info.name, "a.bin");
    assert!(!m.info.multi_file);
    assert_eq!(m.info.lengths.total_length(), 40_000);
    assert_eq!(m.info.lengths.num_pieces(), 3);
    assert_eq!(m.info.pieces.len(), 3);
    assert_eq!(m.info.pieces[1][0], 20);
    assert_eq!(m.info.files.len(), 1);
    assert_eq!(m.info.files[0].path, vec!["a.bin"]);
    assert_eq!(m.info.file_path(0), PathBuf::from("a.bin"));
    assert_eq!(m.trackers, vec![vec!["http://t.test/an".to_string()]]);
    assert!(m.url_list.is_empty() && !m.info.private && m.comment.is_none());
}

#[test]
fn multi_file_torrent_with_empty_and_padding_files() {
    // BEP 47 padding files, both named `.pad/16383` as libtorrent names them.
    let pad = padding_file(b"p");
    let pad2 = padding_file(b"xp");
    let files = [
        file(1, &[b"one"]),
        pad,
        file(0, &[b"dir", b"empty"]),
        file(16384, &[b"dir", b"sub", b"big"]),
        pad2,
        file(5, &[b"dir", b"z"]),
    ];
    let m = Metainfo::from_bytes(&torrent(&multi_info(&files, 4))).unwrap();
    let i = &m.info;
    assert!(i.multi_file);
    let offsets: Vec<u64> = i.files.iter().map(|f| f.offset).collect();
    assert_eq!(offsets, vec![0, 1, 16384, 16384, 32768, 32768 + 16383]);
    let padding: Vec<bool> = i.files.iter().map(|f| f.padding).collect();
    assert_eq!(padding, vec![false, true, false, false, true, false]);
    assert_eq!(i.lengths.total_length(), 32768 + 16383 + 5);
    assert_eq!(i.file_path(3), PathBuf::from("root/dir/sub/big"));
    assert_eq!(i.display_path(3), "dir/sub/big");
}

#[test]
fn optional_fields() {
    let info = single_info(b"x", 1);
    let bytes = cat(&[
        b"d8:announce5:http:13:announce-listll5:a.one5:a.twoeleli7eel5:b.oneee",
        b"7:comment2:hi10:created by2:me13:creation datei1700000000e4:info",
        &info,
        b"8:url-listl6:http:w0:i3eee",
    ]);
    let m = Metainfo::from_bytes(&bytes).unwrap();
    assert_eq!(m.trackers, vec![vec!["a.one", "a.two"], vec!["b.one"]]);
    assert_eq!(m.url_list, vec!["http:w"]);
    assert_eq!(m.comment.as_deref(), Some("hi"));
    assert_eq!(m.created_by.as_deref(), Some("me"));
    assert_eq!(m.creation_date, Some(1_700_000_000));

    let one_seed = cat(&[b"d4:info", &info, b"8:url-list8:http://se"]);
    let m = Metainfo::from_bytes(&one_seed).unwrap();
    assert_eq!(m.url_list, vec!["http://s"]);
    assert!(m.trackers.is_empty());
}

#[test]
fn private_flag() {
    let mut info = single_info(b"x", 1);
    info.truncate(info.len() - 1);
    info.extend_from_slice(b"7:privatei1ee");
    assert!(Metainfo::from_bytes(&torrent(&info)).unwrap().info.private);
}

#[test]
fn utf8_variants_are_preferred() {
    let info = cat(&[
        b"d5:filesld6:lengthi3e4:pathl3:\xff\xfe1e10:path.utf-8l3:dir5:caf\xc3\xa9eee",
        b"4:name2:\xc1x10:name.utf-82:ok12:piece lengthi16384e6:pieces",
        &pieces(1),
        b"e",
    ]);
    let m = Metainfo::from_bytes(&torrent(&info)).unwrap();
    assert_eq!(m.info.name, "ok");
    assert_eq!(m.info.files[0].path, vec!["dir", "café"]);
}

#[test]
fn info_hash_is_over_raw_bytes_not_a_re_encoding() {
    // Keys out of order: a re-encoding would sort them and change the hash.
    let info = cat(&[
        b"d4:name1:x6:lengthi1e12:piece lengthi16384e6:pieces",
        &pieces(1),
        b"e",
    ]);
    let m = Metainfo::from_bytes(&torrent(&info)).unwrap();
    assert_eq!(m.info_hash, info_hash_of(&info));
    let reencoded = crate::bencode::decode(&info).unwrap().encode();
    assert_ne!(reencoded, info);
    assert_ne!(m.info_hash, info_hash_of(&reencoded));
    assert_eq!(Info::from_bytes(&info).unwrap(), m.info);
}

#[test]
fn every_truncation_is_a_clean_error() {
    let bytes = torrent(&single_info(b"file", 20_000));
    for cut in 0..bytes.len() {
        assert!(
            matches!(err(&bytes[..cut]), MetainfoError::Decode(_)),
            "cut at {cut}"
        );
    }
}

#[test]
fn root_must_be_a_dict_with_info() {
    assert_eq!(err(b"li1ee"), MetainfoError::RootNotDict("list"));
    assert_eq!(err(b"4:spam"), MetainfoError::RootNotDict("string"));
    assert_eq!(err(b"d3:fooi1ee"), MetainfoError::Missing("info".into()));
    assert!(matches!(
        err(b"d4:infoi1ee"),
        MetainfoError::WrongType { .. }
    ));
}

#[test]
fn pieces_must_match_the_layout() {
    let bad_multiple = cat(&[
        b"d6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces21:",
        &[0u8; 21],
        b"e",
    ]);
    let e = err(&torrent(&bad_multiple));
    assert!(e.to_string().contains("not a multiple of 20"), "{e}");
    let too_few = cat(&[
        b"d6:lengthi40000e4:name1:x12:piece lengthi16384e6:pieces",
        &pieces(2),
        b"e",
    ]);
    let e = err(&torrent(&too_few));
    assert!(e.to_string().contains("has 2 hashes"), "{e}");
    let wrong_type = b"d6:lengthi1e4:name1:x12:piece lengthi16384e6:piecesi0ee";
    assert!(matches!(
        err(&torrent(wrong_type)),
        MetainfoError::WrongType { .. }
    ));
    let v2 = b"d4:name1:x12:meta versioni2e12:piece lengthi16384ee";
    assert_eq!(err(&torrent(v2)), MetainfoError::V2Only);
}

#[test]
fn negative_and_absurd_lengths() {
    let neg = cat(&[
        b"d6:lengthi-5e4:name1:x12:piece lengthi16384e6:pieces",
        &pieces(1),
        b"e",
    ]);
    assert!(err(&torrent(&neg))
        .to_string()
        .contains("negative length -5"));
    let huge = cat(&[
        b"d6:lengthi1125899906842625e4:name1:x12:piece lengthi16384e6:pieces",
        &pieces(1),
        b"e",
    ]);
    assert!(err(&torrent(&huge)).to_string().contains("2^50"));
    // Each file under the limit, the sum above it.
    let half = (MAX_TOTAL_LENGTH / 2 + 1) as i64;
    let files = [file(half, &[b"a"]), file(half, &[b"b"])];
    assert!(err(&torrent(&multi_info(&files, 1)))
        .to_string()
        .contains("2^50"));
    let files = [file(-1, &[b"a"])];
    assert!(err(&torrent(&multi_info(&files, 1)))
        .to_string()
        .contains("negative"));
    for pl in ["0", "-16384", "134217729", "99999999999"] {
        let info = cat(&[
            b"d6:lengthi1e4:name1:x12:piece lengthi",
            pl.as_bytes(),
            b"e6:pieces",
            &pieces(1),
            b"e",
        ]);
        let e = err(&torrent(&info));
        assert!(e.to_string().contains("piece length"), "{pl}: {e}");
    }
    let empty = cat(&[b"d6:lengthi0e4:name1:x12:piece lengthi16384e6:pieces0:e"]);
    assert!(matches!(
        err(&torrent(&empty)),
        MetainfoError::BadValue { .. }
    ));
}

#[test]
fn huge_declared_string_and_deep_nesting() {
    let e = err(b"d4:info99999999999999:abce");
    assert!(matches!(e, MetainfoError::Decode(_)));
    assert!(e.to_string().contains("99999999999999"), "{e}");
    let mut deep = b"d4:info".to_vec();
    deep.extend(vec![b'l'; 10_000]);
    deep.extend(vec![b'e'; 10_001]);
    assert!(err(&deep).to_string().contains("nesting"));
    let big = vec![b'd'; MAX_METAINFO_LEN + 1];
    assert_eq!(err(&big), MetainfoError::TooLarge(MAX_METAINFO_LEN + 1));
}

#[test]
fn file_list_shape() {
    let both = cat(&[
        b"d5:filesle6:lengthi1e4:name1:x12:piece lengthi16384e6:pieces",
        &pieces(1),
        b"e",
    ]);
    assert!(err(&torrent(&both)).to_string().contains("both"));
    let neither = cat(&[
        b"d4:name1:x12:piece lengthi16384e6:pieces",
        &pieces(1),
        b"e",
    ]);
    assert!(matches!(err(&torrent(&neither)), MetainfoError::Missing(_)));
    assert!(err(&torrent(&multi_info(&[], 1)))
        .to_string()
        .contains("empty"));
    let no_path = b"d6:lengthi1ee".to_vec();
    assert_eq!(
        err(&torrent(&multi_info(&[no_path], 1))),
        MetainfoError::Missing("path".into())
    );
    let int_path = b"d6:lengthi1e4:pathli1eee".to_vec();
    assert!(matches!(
        err(&torrent(&multi_info(&[int_path], 1))),
        MetainfoError::WrongType { .. }
    ));
}

#[test]
fn duplicate_paths_and_file_as_directory() {
    let files = [
        file(1, &[b"a", b"b"]),
        file(1, &[b"c"]),
        file(1, &[b"a", b"b"]),
    ];
    assert_eq!(
        err(&torrent(&multi_info(&files, 1))),
        MetainfoError::DuplicatePath("a/b".into())
    );
    let files = [
        file(1, &[b"a"]),
        file(1, &[b"a.txt"]),
        file(1, &[b"a", b"b"]),
    ];
    assert_eq!(
        err(&torrent(&multi_info(&files, 1))),
        MetainfoError::FileIsDirectory {
            file: "a".into(),
            other: "a/b".into()
        }
    );
}

#[test]
fn path_traversal_is_rejected() {
    let cases: [(&[&[u8]], PathProblem); 6] = [
        (&[b"..", b"etc", b"passwd"], PathProblem::DotDot),
        (&[b"a", b".", b"b"], PathProblem::Dot),
        (&[b"a", b""], PathProblem::EmptyComponent),
        (&[b"a\0b"], PathProblem::Nul),
        (&[b"/etc/passwd"], PathProblem::Absolute),
        (&[b"a/../../b"], PathProblem::Separator),
    ];
    for (path, problem) in cases {
        match err(&torrent(&multi_info(&[file(1, path)], 1))) {
            MetainfoError::Path(e) => assert_eq!(e.problem, problem, "{path:?}"),
            other => panic!("{path:?}: {other}"),
        }
    }
    let no_components = b"d6:lengthi1e4:pathlee".to_vec();
    assert!(matches!(
        err(&torrent(&multi_info(&[no_components], 1))),
        MetainfoError::Path(PathError {
            problem: PathProblem::Empty,
            ..
        })
    ));
    for name in [&b".."[..], b".", b"", b"/abs", b"a/b"] {
        let e = err(&torrent(&single_info(name, 1)));
        assert!(matches!(e, MetainfoError::Path(_)), "{name:?}: {e}");
    }
}
