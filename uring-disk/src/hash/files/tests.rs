use std::sync::atomic::AtomicU64;

use super::*;
use crate::hash::sha1;

/// Deterministic, non-repeating test bytes.
fn bytes(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// Writes files of `lens` under a tempdir; returns the dir, (path, len) pairs and the
/// concatenated content.
fn make_files(lens: &[usize]) -> (tempfile::TempDir, Vec<(PathBuf, u64)>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let mut all = Vec::new();
    let mut files = Vec::new();
    for (i, &len) in lens.iter().enumerate() {
        let data = bytes(len, i as u32 + 1);
        let path = dir.path().join(format!("f{i}"));
        std::fs::write(&path, &data).unwrap();
        all.extend_from_slice(&data);
        files.push((path, len as u64));
    }
    (dir, files, all)
}

fn expected(all: &[u8], piece_length: usize) -> Vec<[u8; 20]> {
    all.chunks(piece_length).map(sha1).collect()
}

#[test]
fn hashes_match_concatenation_for_odd_layouts() {
    let layouts: &[&[usize]] = &[
        &[1],
        &[0, 1, 0],
        &[16384],
        &[16385, 1, 0, 16383, 7],
        &[3, 5, 40_000, 1, 100_000],
        &[700_000, 300_001],
    ];
    for lens in layouts {
        let (_dir, files, all) = make_files(lens);
        for piece_length in [16384u32, 32768, 1 << 20] {
            for threads in [1, 2, 3] {
                let total = AtomicU64::new(0);
                let got = hash_pieces(&files, piece_length, threads, &|n| {
                    total.fetch_add(n, Ordering::Relaxed);
                })
                .unwrap();
                assert_eq!(got, expected(&all, piece_length as usize), "{lens:?}");
                assert_eq!(total.load(Ordering::Relaxed), all.len() as u64);
            }
        }
    }
}

#[test]
fn many_chunks_with_many_threads() {
    // More than one chunk per worker, so the work-sharing counter is exercised.
    let (_dir, files, all) = make_files(&[CHUNK_BYTES as usize * 2 + 12345, 777]);
    let got = hash_pieces(&files, 16384, 4, &|_| {}).unwrap();
    assert_eq!(got, expected(&all, 16384));
}

#[test]
fn empty_torrent_has_no_pieces() {
    let (_dir, files, _) = make_files(&[0, 0]);
    assert!(hash_pieces(&files, 16384, 2, &|_| {}).unwrap().is_empty());
    assert!(hash_pieces(&[], 16384, 2, &|_| {}).unwrap().is_empty());
}

#[test]
fn longer_file_is_read_only_up_to_its_length() {
    let (_dir, mut files, all) = make_files(&[50_000, 10]);
    files[0].1 = 40_000;
    let mut want = all[..40_000].to_vec();
    want.extend_from_slice(&all[50_000..]);
    let got = hash_pieces(&files, 16384, 2, &|_| {}).unwrap();
    assert_eq!(got, expected(&want, 16384));
}

#[test]
fn short_file_is_an_error_naming_it() {
    let (_dir, mut files, _) = make_files(&[100, 200]);
    files[1].1 = 201;
    match hash_pieces(&files, 16384, 2, &|_| {}) {
        Err(StorageError::ShortFile {
            path,
            expected,
            actual,
        }) => {
            assert_eq!(path, files[1].0);
            assert_eq!((expected, actual), (201, 200));
        }
        other => panic!("expected ShortFile, got {other:?}"),
    }
}

#[test]
fn missing_file_is_an_error_naming_it() {
    let (dir, mut files, _) = make_files(&[100]);
    files.push((dir.path().join("nope"), 5));
    let err = hash_pieces(&files, 16384, 1, &|_| {}).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn zero_piece_length_is_an_error() {
    let (_dir, files, _) = make_files(&[100]);
    assert!(matches!(
        hash_pieces(&files, 0, 1, &|_| {}),
        Err(StorageError::BadLayout(_))
    ));
}

fn storage_files(files: &[(PathBuf, u64)]) -> Vec<StorageFile> {
    files
        .iter()
        .map(|(p, len)| StorageFile {
            rel_path: PathBuf::from(p.file_name().unwrap()),
            length: *len,
            padding: false,
        })
        .collect()
}

#[test]
fn check_finds_good_corrupt_and_missing_pieces() {
    let (dir, files, all) = make_files(&[40_000, 30_000, 50_000]);
    let hashes = expected(&all, 16384);
    let sfiles = storage_files(&files);
    let ok = check_pieces(dir.path(), &sfiles, 16384, &hashes, 2, &|_| {}).unwrap();
    assert!(ok.iter().all(|&b| b));

    // Corrupt one byte in piece 3 (absolute offset 3 * 16384 + 5, in file 1).
    let mut f1 = std::fs::read(&files[1].0).unwrap();
    f1[3 * 16384 + 5 - 40_000] ^= 0xff;
    std::fs::write(&files[1].0, &f1).unwrap();
    let ok = check_pieces(dir.path(), &sfiles, 16384, &hashes, 2, &|_| {}).unwrap();
    let bad: Vec<usize> = (0..ok.len()).filter(|&i| !ok[i]).collect();
    assert_eq!(bad, vec![3]);

    // Remove the last file: pieces from offset 70_000 on fail, earlier ones (but 3) pass.
    std::fs::remove_file(&files[2].0).unwrap();
    let ok = check_pieces(dir.path(), &sfiles, 16384, &hashes, 2, &|_| {}).unwrap();
    for (i, &good) in ok.iter().enumerate() {
        let end = ((i + 1) * 16384).min(all.len());
        assert_eq!(good, i != 3 && end <= 70_000, "piece {i}");
    }
}

#[test]
fn check_short_file_fails_only_its_pieces() {
    let (dir, files, all) = make_files(&[16384 * 2, 16384 * 2]);
    let hashes = expected(&all, 16384);
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&files[1].0)
        .unwrap();
    f.set_len(16384 + 100).unwrap();
    let ok = check_pieces(
        dir.path(),
        &storage_files(&files),
        16384,
        &hashes,
        1,
        &|_| {},
    )
    .unwrap();
    assert_eq!(ok, vec![true, true, true, false]);
}

#[test]
fn check_reads_padding_as_zeros() {
    let (dir, files, _) = make_files(&[100, 16384 * 2]);
    let mut sfiles = storage_files(&files);
    sfiles.insert(
        1,
        StorageFile {
            rel_path: PathBuf::from(".pad/16284"),
            length: 16284,
            padding: true,
        },
    );
    let mut all = std::fs::read(&files[0].0).unwrap();
    all.resize(16384, 0);
    all.extend(std::fs::read(&files[1].0).unwrap());
    let hashes = expected(&all, 16384);
    let ok = check_pieces(dir.path(), &sfiles, 16384, &hashes, 2, &|_| {}).unwrap();
    assert_eq!(ok, vec![true; 3]);
}

#[test]
fn check_refuses_bad_paths_and_wrong_hash_count() {
    let (dir, files, all) = make_files(&[100]);
    let hashes = expected(&all, 16384);
    let mut sfiles = storage_files(&files);
    assert!(matches!(
        check_pieces(dir.path(), &sfiles, 16384, &[], 1, &|_| {}),
        Err(StorageError::BadLayout(_))
    ));
    sfiles[0].rel_path = PathBuf::from("../escape");
    assert!(matches!(
        check_pieces(dir.path(), &sfiles, 16384, &hashes, 1, &|_| {}),
        Err(StorageError::BadPath { .. })
    ));
}
