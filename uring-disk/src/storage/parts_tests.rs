//! Tests of parked files and the part file: never created, redirected spans, recheck from the
//! part file, moving data out on selection, reopening.

use std::os::unix::fs::FileExt;

use sha1::{Digest, Sha1};

use super::*;

const PIECE: u32 = 16;

/// a = [0,10), b = [10,40), c = [40,48): piece 0 straddles a|b, piece 2 straddles b|c.
fn files() -> Vec<StorageFile> {
    [("t/a", 10), ("t/b", 30), ("t/c", 8)]
        .iter()
        .map(|(p, l)| StorageFile {
            rel_path: PathBuf::from(p),
            length: *l,
            padding: false,
        })
        .collect()
}

fn content() -> Vec<u8> {
    (0..48u32).map(|i| (i * 7 + 1) as u8).collect()
}

fn hashes() -> Vec<[u8; 20]> {
    content()
        .chunks(PIECE as usize)
        .map(|c| Sha1::digest(c).into())
        .collect()
}

fn opts() -> StorageOptions {
    StorageOptions {
        preallocate: false,
        direct_io: false,
    }
}

fn open(root: &Path, wanted: &[bool]) -> Storage {
    let sel = Selection {
        wanted: wanted.to_vec(),
        part_file: PathBuf::from(".ringtorrent/x.parts"),
    };
    Storage::open_selected(root, files(), PIECE, opts(), sel).unwrap()
}

/// Writes piece `p` the way the disk pipeline does: one write per span, through `handle`.
fn write_piece(s: &Storage, p: u32) {
    let data = content();
    let len = s.piece_len(p).unwrap();
    let base = (p * PIECE) as usize;
    for span in s.spans(p, 0, len).unwrap() {
        let h = s
            .handle(span.file)
            .expect("a handle for every non-padding span");
        let lo = base + span.buf_offset as usize;
        h.buffered
            .write_all_at(&data[lo..lo + span.len as usize], span.file_offset)
            .unwrap();
    }
}

#[test]
fn unselected_file_is_not_created_and_its_bytes_go_to_the_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), &[true, false, true]);
    assert!(s.is_parked(1) && !s.is_parked(0) && !s.is_parked(2));
    assert!(dir.path().join("t/a").exists() && dir.path().join("t/c").exists());
    assert!(!dir.path().join("t/b").exists());
    let part = dir.path().join(".ringtorrent/x.parts");
    assert!(!part.exists(), "no part file before a span needs it");
    let spans: Vec<_> = s.spans(0, 0, PIECE).unwrap().collect();
    assert_eq!(spans.len(), 2);
    assert_eq!((spans[0].file, spans[0].file_offset), (0, 0));
    assert_eq!(
        (spans[1].file, spans[1].file_offset, spans[1].len),
        (3, 10, 6)
    );
    assert!(part.exists());
    write_piece(&s, 0);
    write_piece(&s, 2);
    assert!(!dir.path().join("t/b").exists());
    assert_eq!(
        std::fs::read(dir.path().join("t/a")).unwrap(),
        &content()[..10]
    );
    assert_eq!(
        std::fs::read(dir.path().join("t/c")).unwrap(),
        &content()[40..]
    );
    let part_bytes = std::fs::read(&part).unwrap();
    assert_eq!(&part_bytes[10..16], &content()[10..16]);
    assert_eq!(&part_bytes[32..40], &content()[32..40]);
    assert!(
        part_bytes[16..32].iter().all(|&b| b == 0),
        "piece 1 never written"
    );
    // Recheck reads the parked bytes from the part file.
    let ok = s.check_pieces(&hashes(), 2, &|_| {}).unwrap();
    assert_eq!(ok, [true, false, true]);
}

#[test]
fn selecting_moves_part_data_into_the_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), &[true, false, true]);
    write_piece(&s, 0);
    write_piece(&s, 2);
    let sel = s.selector();
    assert!(sel.select(1).unwrap());
    assert!(!sel.select(0).unwrap(), "not parked");
    assert!(sel.select(9).is_err());
    assert!(
        sel.is_parked(1),
        "moved by the planning thread, not the caller"
    );
    s.apply_selections();
    assert!(!sel.is_parked(1));
    let b = std::fs::read(dir.path().join("t/b")).unwrap();
    assert_eq!(b.len(), 30);
    assert_eq!(&b[..6], &content()[10..16]);
    assert_eq!(&b[22..], &content()[32..40]);
    // Spans now go to the real file; the rest of b downloads there.
    let spans: Vec<_> = s.spans(1, 0, PIECE).unwrap().collect();
    assert_eq!((spans[0].file, spans[0].file_offset), (1, 6));
    write_piece(&s, 1);
    assert_eq!(
        std::fs::read(dir.path().join("t/b")).unwrap(),
        &content()[10..40]
    );
    assert_eq!(s.check_pieces(&hashes(), 1, &|_| {}).unwrap(), [true; 3]);
    drop(s);
    assert!(
        dir.path().join(".ringtorrent/x.parts").exists(),
        "a selector still holds it"
    );
    drop(sel);
    assert!(
        !dir.path().join(".ringtorrent/x.parts").exists(),
        "no file parked: part file removed"
    );
}

#[test]
fn selection_waits_while_a_part_file_op_is_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), &[true, false, true]);
    write_piece(&s, 0);
    // An op in flight holds the part file's handle.
    let in_flight = Arc::clone(s.handle(3).unwrap());
    s.selector().select(1).unwrap();
    s.apply_selections();
    assert!(s.is_parked(1), "must not move while a write may still land");
    let spans: Vec<_> = s.spans(0, 0, PIECE).unwrap().collect();
    assert_eq!(spans[1].file, 3, "still redirected");
    drop(in_flight);
    let spans: Vec<_> = s.spans(0, 0, PIECE).unwrap().collect();
    assert_eq!(spans[1].file, 1, "spans() applied the selection first");
    assert_eq!(
        &std::fs::read(dir.path().join("t/b")).unwrap()[..6],
        &content()[10..16]
    );
}

#[test]
fn drop_applies_pending_selections() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), &[true, false, false]);
    write_piece(&s, 0);
    s.selector().select(1).unwrap();
    drop(s);
    let b = std::fs::read(dir.path().join("t/b")).unwrap();
    assert_eq!(&b[..6], &content()[10..16]);
    assert!(!dir.path().join("t/c").exists());
    assert!(
        dir.path().join(".ringtorrent/x.parts").exists(),
        "c is still parked: the part file stays"
    );
}

#[test]
fn reopening_with_a_wider_selection_adopts_part_data() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), &[true, false, true]);
    write_piece(&s, 0);
    write_piece(&s, 2);
    drop(s);
    assert!(dir.path().join(".ringtorrent/x.parts").exists());
    let s = open(dir.path(), &[true, true, true]);
    assert!(!s.is_parked(1));
    let b = std::fs::read(dir.path().join("t/b")).unwrap();
    assert_eq!(&b[..6], &content()[10..16]);
    assert_eq!(&b[22..], &content()[32..40]);
    assert!(!dir.path().join(".ringtorrent/x.parts").exists());
    assert!(
        !dir.path().join(".ringtorrent").exists(),
        "empty dir removed"
    );
    assert_eq!(
        std::fs::read(dir.path().join("t/a")).unwrap(),
        &content()[..10]
    );
    assert_eq!(
        s.check_pieces(&hashes(), 1, &|_| {}).unwrap(),
        [true, false, true]
    );
}

#[test]
fn an_existing_unselected_file_is_used_not_parked() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("t")).unwrap();
    std::fs::write(dir.path().join("t/b"), &content()[10..40]).unwrap();
    let s = open(dir.path(), &[true, false, true]);
    assert!(!s.is_parked(1));
    let spans: Vec<_> = s.spans(0, 0, PIECE).unwrap().collect();
    assert_eq!(spans[1].file, 1);
    assert!(!dir.path().join(".ringtorrent").exists());
}

#[test]
fn bad_part_file_path_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["../x.parts", "/tmp/x.parts", ""] {
        let sel = Selection {
            wanted: vec![true, false, true],
            part_file: PathBuf::from(bad),
        };
        let r = Storage::open_selected(dir.path(), files(), PIECE, opts(), sel);
        assert!(matches!(r, Err(StorageError::BadPath { .. })), "{bad:?}");
    }
}

#[test]
fn recheck_without_part_file_fails_only_straddling_pieces() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), &[true, false, true]);
    // Write the stored files' bytes directly: the part file does not exist.
    std::fs::write(dir.path().join("t/a"), &content()[..10]).unwrap();
    std::fs::write(dir.path().join("t/c"), &content()[40..]).unwrap();
    assert_eq!(s.check_pieces(&hashes(), 1, &|_| {}).unwrap(), [false; 3]);
}

/// Reads a block the way a shard does: each file part with `pread` on the part's descriptor,
/// zeros for padding. `None` when the reader refuses the block.
fn read_with(r: &BlockReader, p: u32, offset: u32, len: u32) -> Option<Vec<u8>> {
    let mut parts = Vec::new();
    if !r.parts(p, offset, len, &mut parts).unwrap() {
        assert!(parts.is_empty());
        return None;
    }
    let mut out = vec![0xeeu8; len as usize];
    for part in parts {
        match part {
            ReadPart::File {
                file,
                file_offset,
                at,
                len,
            } => file
                .file()
                .read_exact_at(&mut out[at as usize..(at + len) as usize], file_offset)
                .unwrap(),
            ReadPart::Zeros { at, len } => out[at as usize..(at + len) as usize].fill(0),
        }
    }
    Some(out)
}

#[test]
fn the_block_reader_maps_stored_files_and_refuses_the_part_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path(), &[true, false, true]);
    for p in 0..3 {
        write_piece(&s, p);
    }
    let r = s.reader();
    let data = content();
    // Piece 0 straddles a (stored) and b (parked): refused, the disk thread serves it.
    assert_eq!(read_with(&r, 0, 0, PIECE), None);
    // A block of piece 0 inside a only is mapped.
    assert_eq!(read_with(&r, 0, 2, 8).unwrap(), &data[2..10]);
    // Piece 1 lies in b only.
    assert_eq!(read_with(&r, 1, 0, PIECE), None);
    assert!(r.parts(3, 0, 1, &mut Vec::new()).is_err(), "no piece 3");
    assert!(
        r.parts(2, 8, 9, &mut Vec::new()).is_err(),
        "past the piece end"
    );
    // Once b is selected and moved out of the part file, every block maps onto files.
    assert!(s.selector().select(1).unwrap());
    s.apply_selections();
    for p in 0..3u32 {
        let len = s.piece_len(p).unwrap();
        let lo = (p * PIECE) as usize;
        assert_eq!(
            read_with(&r, p, 0, len).unwrap(),
            &data[lo..lo + len as usize]
        );
    }
}

#[test]
fn the_block_reader_reads_padding_as_zeros() {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        StorageFile {
            rel_path: PathBuf::from("x"),
            length: 10,
            padding: false,
        },
        StorageFile {
            rel_path: PathBuf::from(".pad/6"),
            length: 6,
            padding: true,
        },
        StorageFile {
            rel_path: PathBuf::from("y"),
            length: 16,
            padding: false,
        },
    ];
    let s = Storage::open(dir.path(), files, PIECE, opts()).unwrap();
    std::fs::write(dir.path().join("x"), [7u8; 10]).unwrap();
    std::fs::write(dir.path().join("y"), [9u8; 16]).unwrap();
    let r = s.reader();
    let mut expect = vec![7u8; 10];
    expect.extend([0u8; 6]);
    assert_eq!(read_with(&r, 0, 0, PIECE).unwrap(), expect);
    assert_eq!(read_with(&r, 0, 12, 4).unwrap(), [0u8; 4]);
    assert_eq!(read_with(&r, 1, 0, PIECE).unwrap(), [9u8; 16]);
}
