//! Finding the torrent an initiator asks for.
//!
//! The initiator never sends the info-hash (SKEY) itself, only `HASH('req2', SKEY)` masked
//! with `HASH('req3', S)`. The responder unmasks it and looks for the torrent whose
//! `HASH('req2', info_hash)` it is.

use std::collections::HashMap;

use super::cipher::req2;
use super::HASH_LEN;
use crate::types::InfoHash;

/// Maps `HASH('req2', SKEY)` back to SKEY.
pub trait FindSkey {
    /// The info-hash whose `HASH('req2', info_hash)` is `req2`, if we serve it.
    fn find_skey(&self, req2: &[u8; HASH_LEN]) -> Option<InfoHash>;
}

/// A list of info-hashes, searched by hashing each one (fine for a handful of torrents).
impl FindSkey for [InfoHash] {
    fn find_skey(&self, wanted: &[u8; HASH_LEN]) -> Option<InfoHash> {
        self.iter().copied().find(|ih| &req2(&ih.0) == wanted)
    }
}

/// The torrents we serve, keyed by `HASH('req2', info_hash)`: one SHA-1 per torrent when
/// it is added, one lookup per incoming connection.
#[derive(Clone, Debug, Default)]
pub struct SkeyTable {
    by_req2: HashMap<[u8; HASH_LEN], InfoHash>,
}

impl SkeyTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a torrent.
    pub fn insert(&mut self, info_hash: InfoHash) {
        self.by_req2.insert(req2(&info_hash.0), info_hash);
    }

    /// Removes a torrent.
    pub fn remove(&mut self, info_hash: &InfoHash) {
        self.by_req2.remove(&req2(&info_hash.0));
    }

    /// Number of torrents.
    pub fn len(&self) -> usize {
        self.by_req2.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_req2.is_empty()
    }
}

impl FromIterator<InfoHash> for SkeyTable {
    fn from_iter<I: IntoIterator<Item = InfoHash>>(iter: I) -> Self {
        let mut t = SkeyTable::new();
        for ih in iter {
            t.insert(ih);
        }
        t
    }
}

impl FindSkey for SkeyTable {
    fn find_skey(&self, req2: &[u8; HASH_LEN]) -> Option<InfoHash> {
        self.by_req2.get(req2).copied()
    }
}
