//! Metainfo parser: never panics; what it accepts holds the documented invariants.
//!
//! The same input goes to `Metainfo::from_bytes` (a whole .torrent file) and to
//! `Info::from_bytes` (a bare info dictionary, as BEP 9 metadata exchange delivers it). An
//! accepted torrent's own info bytes parse, on their own, to the same `Info`.

use ringtorrent::metainfo::{info_hash_of, Info, Metainfo};

pub fn metainfo(data: &[u8]) {
    if let Ok(m) = Metainfo::from_bytes(data) {
        assert_eq!(m.info_hash, info_hash_of(&m.info_bytes));
        check_info(&m.info);
        assert_eq!(Info::from_bytes(&m.info_bytes).as_ref(), Ok(&m.info));
    }
    if let Ok(info) = Info::from_bytes(data) {
        check_info(&info);
    }
}

/// The invariants `engine/src/metainfo/mod.rs` documents for a parsed info dictionary.
fn check_info(info: &Info) {
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
}
