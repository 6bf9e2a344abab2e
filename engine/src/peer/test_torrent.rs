//! The torrent the peer session's unit tests run against: 40 two-block pieces (zero hashes, so
//! nothing ever verifies), with a real disk pipeline only to obtain a torrent slot.

use std::sync::Arc;

use uring_disk::{BufferPool, DiskPipeline, Storage, StorageFile, StorageOptions};

use crate::metainfo::build::TorrentBuilder;
use crate::picker::Picker;
use crate::torrent::TorrentShared;
use crate::types::Bitfield;
use crate::PeerId;

pub const PIECE: u32 = 32 * 1024;
pub const PIECES: u32 = 40;

/// The shared torrent state, and what must outlive it.
pub struct TestTorrent {
    pub t: Arc<TorrentShared>,
    _disk: DiskPipeline,
    _dir: tempfile::TempDir,
}

/// We have every piece (`seeding`) or none.
pub fn test_torrent(seeding: bool) -> TestTorrent {
    test_torrent_with(seeding, false)
}

/// [`test_torrent`], of a private torrent (BEP 27) if `private`.
pub fn test_torrent_with(seeding: bool, private: bool) -> TestTorrent {
    let dir = tempfile::tempdir().unwrap();
    let (_, meta) = TorrentBuilder::single_file("t.bin", u64::from(PIECE * PIECES), PIECE)
        .piece_hashes(vec![[0u8; 20]; PIECES as usize])
        .private(private)
        .build()
        .unwrap();
    let info = &meta.info;
    let have = if seeding {
        Bitfield::full(PIECES)
    } else {
        Bitfield::new(PIECES)
    };
    let picker = Picker::new(info.lengths, &have, &Bitfield::full(PIECES)).unwrap();
    let files = vec![StorageFile {
        rel_path: "t.bin".into(),
        length: info.lengths.total_length(),
        padding: false,
    }];
    let storage = Storage::open(dir.path(), files, PIECE, StorageOptions::default()).unwrap();
    let disk = DiskPipeline::start(uring_disk::DiskConfig {
        hash_threads: 1,
        ..Default::default()
    })
    .unwrap();
    let slot = disk
        .add_torrent(storage, info.pieces.clone().into(), Arc::new(|_| {}))
        .unwrap();
    let pool = BufferPool::new(PIECE as usize, 16);
    let t = Arc::new(TorrentShared::new(
        1,
        Arc::new(meta),
        PeerId::generate(),
        picker,
        pool,
        slot,
        64,
    ));
    TestTorrent {
        t,
        _disk: disk,
        _dir: dir,
    }
}
