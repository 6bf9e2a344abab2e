//! Bencode (BEP 3). OWNER: helper A.
