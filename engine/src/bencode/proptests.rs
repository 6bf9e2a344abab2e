//! Property tests: canonical encoding round-trips, and no input makes the decoder panic.

use proptest::prelude::*;

use super::{decode, decode_prefix, Dict, Value};

/// An owned tree that a borrowed [`Value`] can be built over.
#[derive(Debug, Clone)]
enum Tree {
    Int(i64),
    Bytes(Vec<u8>),
    List(Vec<Tree>),
    Dict(Vec<(Vec<u8>, Tree)>),
}

impl Tree {
    fn value(&self) -> Value<'_> {
        match self {
            Tree::Int(i) => Value::int(*i),
            Tree::Bytes(b) => Value::bytes(b),
            Tree::List(l) => Value::list(l.iter().map(Tree::value).collect()),
            Tree::Dict(d) => Value::dict(
                d.iter()
                    .fold(Dict::new(), |acc, (k, v)| acc.with(k, v.value())),
            ),
        }
    }
}

fn tree() -> impl Strategy<Value = Tree> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(Tree::Int),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(Tree::Bytes),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Tree::List),
            proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..6), inner), 0..6)
                .prop_map(Tree::Dict),
        ]
    })
}

proptest! {
    #[test]
    fn encode_decode_round_trip(t in tree()) {
        let v = t.value();
        let enc = v.encode();
        let dec = decode(&enc).unwrap();
        prop_assert_eq!(dec.raw(), &enc[..]);
        prop_assert_eq!(dec.encode(), enc.clone());
        let with_tail = [&enc[..], b"tail"].concat();
        let (prefix, used) = decode_prefix(&with_tail).unwrap();
        prop_assert_eq!(used, enc.len());
        prop_assert_eq!(prefix.encode(), enc);
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Ok(v) = decode(&data) {
            prop_assert_eq!(v.raw(), &data[..]);
        }
    }

    #[test]
    fn mutated_torrents_never_panic(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = valid_torrent();
        for (at, b) in edits {
            let i = at % bytes.len();
            bytes[i] = b;
        }
        if let Ok(m) = crate::metainfo::Metainfo::from_bytes(&bytes) {
            prop_assert_eq!(m.info.pieces.len(), m.info.lengths.num_pieces() as usize);
        }
    }
}

/// A multi-file torrent to mutate.
fn valid_torrent() -> Vec<u8> {
    use crate::metainfo::build::{BuildFile, TorrentBuilder};
    let file = |p: &[&str], length| BuildFile {
        path: p.iter().map(|s| s.to_string()).collect(),
        length,
    };
    let files = vec![file(&["a", "b"], 20_000), file(&["c"], 0), file(&["d"], 9)];
    TorrentBuilder::multi_file("root", files, 16_384)
        .piece_hashes(vec![[7; 20], [8; 20]])
        .trackers(vec![vec!["http://127.0.0.1:1/a".into()]])
        .build()
        // INVARIANT: a fixed, valid layout with the right number of hashes.
        .unwrap()
        .0
}
