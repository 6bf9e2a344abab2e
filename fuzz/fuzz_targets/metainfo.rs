//! Metainfo parser: never panics; what it accepts holds the documented invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;
use ringtorrent::metainfo::{info_hash_of, Metainfo};

fuzz_target!(|data: &[u8]| {
    let Ok(m) = Metainfo::from_bytes(data) else {
        return;
    };
    let info = &m.info;
    assert_eq!(m.info_hash, info_hash_of(&m.info_bytes));
    assert_eq!(info.pieces.len(), info.lengths.num_pieces() as usize);
    let mut offset = 0u64;
    for (i, f) in info.files.iter().enumerate() {
        assert_eq!(f.offset, offset);
        offset += f.length;
        let p = info.file_path(i);
        assert!(p.is_relative());
        assert!(p
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_))));
    }
    assert_eq!(offset, info.lengths.total_length());
    for p in info.lengths.pieces() {
        let _ = info.piece_hash(p);
    }
});
