//! Unit tests of file selection: wanted and high pieces at file boundaries, padding files,
//! pieces straddling files, and the `--select` syntax.

use super::*;

/// A multi-file torrent as bencoded bytes: `(name, length, padding)` per file.
fn torrent(files: &[(&str, u64, bool)], piece_length: u32) -> Metainfo {
    let total: u64 = files.iter().map(|f| f.1).sum();
    let pieces = total.div_ceil(u64::from(piece_length)) as usize;
    let mut b = b"d4:infod5:filesl".to_vec();
    for (name, len, pad) in files {
        b.extend_from_slice(b"d");
        if *pad {
            b.extend_from_slice(b"4:attr1:p");
        }
        b.extend_from_slice(format!("6:lengthi{len}e4:pathl{}:{name}ee", name.len()).as_bytes());
    }
    b.extend_from_slice(
        format!(
            "e4:name1:t12:piece lengthi{piece_length}e6:pieces{}:",
            pieces * 20
        )
        .as_bytes(),
    );
    b.extend(std::iter::repeat_n(7u8, pieces * 20));
    b.extend_from_slice(b"ee");
    Metainfo::from_bytes(&b).expect("fixture parses")
}

fn ones(b: &Bitfield) -> Vec<u32> {
    b.iter().map(|p| p.get()).collect()
}

use FilePriority::{High, Normal, Skip};

#[test]
fn everything_wanted_by_default() {
    let m = torrent(&[("a", 10, false), ("b", 30, false)], 16);
    assert_eq!(ones(&wanted_pieces(&m, &[])), [0, 1, 2]);
    assert_eq!(
        ones(&wanted_pieces(&m, &[Normal])),
        [0, 1, 2],
        "short list: rest Normal"
    );
    assert!(ones(&high_pieces(&m, &[])).is_empty());
}

#[test]
fn boundaries_and_straddling_pieces() {
    // Piece length 16: a = [0,16) piece 0 exactly, b = [16,40) pieces 1-2, c = [40,48) piece 2.
    let m = torrent(&[("a", 16, false), ("b", 24, false), ("c", 8, false)], 16);
    assert_eq!(file_pieces(&m.info, 0), 0..1);
    assert_eq!(file_pieces(&m.info, 1), 1..3);
    assert_eq!(file_pieces(&m.info, 2), 2..3);
    assert_eq!(file_pieces(&m.info, 3), 0..0, "out of range");
    // Only a: ends on a piece boundary, so piece 1 is not wanted.
    assert_eq!(ones(&wanted_pieces(&m, &[Normal, Skip, Skip])), [0]);
    // Only c: piece 2 straddles b and c, so it is wanted.
    assert_eq!(ones(&wanted_pieces(&m, &[Skip, Skip, Normal])), [2]);
    assert_eq!(ones(&wanted_pieces(&m, &[Skip, Normal, Skip])), [1, 2]);
    assert!(ones(&wanted_pieces(&m, &[Skip, Skip, Skip])).is_empty());
    assert_eq!(ones(&high_pieces(&m, &[Normal, Skip, High])), [2]);
}

#[test]
fn empty_files_overlap_nothing() {
    let m = torrent(&[("a", 16, false), ("e", 0, false), ("b", 16, false)], 16);
    assert_eq!(file_pieces(&m.info, 1), 0..0);
    assert!(ones(&wanted_pieces(&m, &[Skip, Normal, Skip])).is_empty());
    assert_eq!(ones(&wanted_pieces(&m, &[Skip, Skip, Normal])), [1]);
}

#[test]
fn padding_files_never_make_a_piece_wanted() {
    // a = 10 bytes + 6 padding: b starts on piece 1.
    let m = torrent(&[("a", 10, false), ("p", 6, true), ("b", 20, false)], 16);
    assert_eq!(ones(&wanted_pieces(&m, &[Skip, Normal, Normal])), [1, 2]);
    assert_eq!(ones(&wanted_pieces(&m, &[Normal, Normal, Skip])), [0]);
    assert_eq!(
        ones(&high_pieces(&m, &[Normal, High, Normal])),
        Vec::<u32>::new()
    );
}

#[test]
fn small_file_inside_one_piece() {
    // b lies inside piece 0 with a and c around it.
    let m = torrent(&[("a", 5, false), ("b", 3, false), ("c", 40, false)], 16);
    assert_eq!(ones(&wanted_pieces(&m, &[Skip, Normal, Skip])), [0]);
    assert_eq!(ones(&wanted_pieces(&m, &[Skip, Skip, Normal])), [0, 1, 2]);
}

#[test]
fn storage_selection_marks_skipped_files_and_names_the_part_file() {
    let m = torrent(&[("a", 16, false), ("b", 24, false)], 16);
    let s = storage_selection(&m, &[Skip]);
    assert_eq!(s.wanted, [false, true]);
    let name = s.part_file.to_string_lossy().into_owned();
    assert!(name.starts_with(".ringtorrent/") && name.ends_with(".parts"));
    assert!(name.contains(&m.info_hash.to_hex()));
}

#[test]
fn selection_syntax() {
    assert_eq!(parse_selection("0,3-5", 6).unwrap(), [0, 3, 4, 5]);
    assert_eq!(parse_selection(" 2 , 0-1,1", 3).unwrap(), [0, 1, 2]);
    assert_eq!(parse_selection("4-4", 5).unwrap(), [4]);
}

#[test]
fn bad_selection_syntax_is_an_error() {
    for bad in [
        "",
        ",",
        "1,",
        "a",
        "1-",
        "-2",
        "1-2-3",
        "+1",
        "0x1",
        "1 2",
        "99999999999999999999999",
    ] {
        assert!(
            matches!(parse_selection(bad, 10), Err(SelectionError::Syntax(_))),
            "{bad:?} accepted"
        );
    }
    assert_eq!(
        parse_selection("5-2", 10),
        Err(SelectionError::Reversed { lo: 5, hi: 2 })
    );
}

#[test]
fn index_out_of_range_is_an_error() {
    assert_eq!(
        parse_selection("0,6", 6),
        Err(SelectionError::OutOfRange { index: 6, files: 6 })
    );
    assert_eq!(
        parse_selection("2-9", 6),
        Err(SelectionError::OutOfRange { index: 9, files: 6 })
    );
    let msg = parse_selection("6", 6).unwrap_err().to_string();
    assert!(msg.contains("0 to 5"), "{msg}");
    assert!(parse_selection("0", 0).is_err());
}
