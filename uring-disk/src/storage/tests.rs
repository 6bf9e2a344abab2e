//! Tests of opening storage: files, sizes, paths.

use super::*;

fn file(p: &str, length: u64, padding: bool) -> StorageFile {
    StorageFile {
        rel_path: PathBuf::from(p),
        length,
        padding,
    }
}

#[test]
fn creates_files_dirs_and_sizes_but_not_padding() {
    let dir = tempfile::tempdir().unwrap();
    let files = vec![
        file("a/b/one", 5000, false),
        file(".pad/3192", 3192, true),
        file("empty", 0, false),
        file("a/two", 1, false),
    ];
    let s = Storage::open(dir.path(), files, 4096, StorageOptions::default()).unwrap();
    assert_eq!(
        std::fs::metadata(dir.path().join("a/b/one")).unwrap().len(),
        5000
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("empty")).unwrap().len(),
        0
    );
    assert_eq!(
        std::fs::metadata(dir.path().join("a/two")).unwrap().len(),
        1
    );
    assert!(!dir.path().join(".pad").exists());
    assert_eq!(s.piece_count(), 3);
    assert_eq!(s.total_len(), 8193);
    assert!(s.handle(1).is_none() && s.handle(0).is_some());
    let spans: Vec<_> = s.spans(1, 0, 4096).unwrap().collect();
    assert_eq!(spans.len(), 2);
    assert!(!spans[0].padding && spans[1].padding);
}

#[test]
fn keeps_existing_data_and_longer_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x"), b"hello world").unwrap();
    std::fs::write(dir.path().join("y"), b"abc").unwrap();
    let files = vec![file("x", 5, false), file("y", 10, false)];
    let opts = StorageOptions {
        preallocate: false,
        direct_io: false,
    };
    Storage::open(dir.path(), files, 16384, opts).unwrap();
    assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"hello world");
    assert_eq!(
        std::fs::read(dir.path().join("y")).unwrap(),
        b"abc\0\0\0\0\0\0\0"
    );
}

#[test]
fn refuses_escaping_and_duplicate_paths() {
    let dir = tempfile::tempdir().unwrap();
    for bad in ["../x", "/abs", ""] {
        let r = Storage::open(
            dir.path(),
            vec![file(bad, 1, false)],
            16384,
            StorageOptions::default(),
        );
        assert!(matches!(r, Err(StorageError::BadPath { .. })), "{bad:?}");
    }
    let r = Storage::open(
        dir.path(),
        vec![file("d", 1, false), file("d", 2, false)],
        16384,
        StorageOptions::default(),
    );
    assert!(matches!(r, Err(StorageError::BadPath { .. })));
    assert!(
        !dir.path().join("d").exists(),
        "nothing created before checks pass"
    );
}

#[test]
fn a_symlink_planted_in_the_download_directory_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.path().join("dl");
    std::fs::create_dir(&root).unwrap();
    // A file symlink, and a directory symlink on the way to a file.
    std::os::unix::fs::symlink(outside.path().join("victim"), root.join("a.bin")).unwrap();
    std::os::unix::fs::symlink(outside.path(), root.join("sub")).unwrap();
    for name in ["a.bin", "sub/b.bin"] {
        let r = Storage::open(
            &root,
            vec![file(name, 100, false)],
            16384,
            StorageOptions::default(),
        );
        match r {
            Err(StorageError::BadPath { path, reason }) => {
                assert!(reason.contains("symlink"), "{reason}");
                assert!(path.starts_with(&root), "{path:?}");
            }
            Err(e) => panic!("{name}: {e}"),
            Ok(_) => panic!("{name}: a planted symlink was followed"),
        }
    }
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "nothing written outside the download directory"
    );
    // The download directory itself may be a symlink: the user chose it.
    let link = dir.path().join("link-to-dl");
    std::os::unix::fs::symlink(&root, &link).unwrap();
    let s = Storage::open(
        &link,
        vec![file("c.bin", 100, false)],
        16384,
        StorageOptions::default(),
    );
    assert!(s.is_ok(), "{:?}", s.err());
    assert!(root.join("c.bin").exists());
}

#[test]
fn file_in_place_of_directory_is_an_io_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"").unwrap();
    let r = Storage::open(
        dir.path(),
        vec![file("f/g", 1, false)],
        16384,
        StorageOptions::default(),
    );
    match r {
        Err(StorageError::Io { path, op, .. }) => {
            assert_eq!(op, IoOp::CreateDir);
            assert_eq!(path, dir.path().join("f"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn the_block_reader_offers_whole_aligned_pieces_and_tells_what_is_cached() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let files = vec![file("a", 3 * 8192 + 100, false), file("b", 5000, false)];
    let s = Storage::open(dir.path(), files, 8192, StorageOptions::default()).unwrap();
    let r = s.reader();
    assert!(
        s.handle(0).unwrap().direct().is_some(),
        "cannot run: no O_DIRECT on the filesystem of {} (set TMPDIR to one that has it)",
        dir.path().display()
    );
    let d = r.direct_piece(1, 8192).expect("piece 1 lies in a, aligned");
    assert_eq!((d.file_offset, d.len, d.read_len), (8192, 8192, 8192));
    assert!(r.direct_piece(1, 4096).is_none(), "longer than allowed");
    assert!(
        r.direct_piece(3, 8192).is_none(),
        "piece 3 straddles a and b"
    );
    assert!(r.direct_piece(9, 8192).is_none(), "no such piece");
    // The page cache: written and read back through it, then dropped from it.
    let h = s.handle(0).unwrap();
    h.buffered.write_all_at(&[7u8; 8192], 8192).unwrap();
    let mut back = [0u8; 8192];
    h.buffered.read_exact_at(&mut back, 8192).unwrap();
    let cached = d
        .file
        .is_cached(8192, 8192)
        .expect("cannot run: no cachestat(2) in this kernel (Linux 6.5 or later needed)");
    assert!(cached);
    h.buffered.sync_all().unwrap();
    // SAFETY: posix_fadvise takes no pointers; the descriptor is open.
    let rc = unsafe {
        libc::posix_fadvise(
            std::os::fd::AsRawFd::as_raw_fd(&h.buffered),
            0,
            0,
            libc::POSIX_FADV_DONTNEED,
        )
    };
    assert_eq!(rc, 0);
    assert_eq!(d.file.is_cached(8192, 8192), Some(false));
}

#[test]
fn bytes_a_file_lost_to_truncation_are_not_cached() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut");
    std::fs::write(&path, vec![5u8; 1 << 20]).unwrap();
    let f = crate::OpenFile::open_read_only(&path).unwrap();
    let _ = std::fs::read(&path).unwrap();
    assert!(
        f.is_cached(0, 1 << 20).is_some(),
        "cannot run: no cachestat(2) in this kernel (Linux 6.5 or later needed)"
    );
    // Cut by someone else. cachestat alone counts the pages past the new end as cached here
    // (the large folio that held them stays whole); is_cached must not.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(512 * 1024)
        .unwrap();
    assert_eq!(f.is_cached(0, 16384), Some(true));
    assert_eq!(f.is_cached(768 * 1024, 16384), Some(false));
    assert_eq!(f.is_cached(512 * 1024 - 4096, 8192), Some(false));
}
