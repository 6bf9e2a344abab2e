//! io_uring storage and hashing for ringtorrent.
//!
//! OWNER: helper C. This is the crate contract (see the helper brief); everything here is the
//! only place besides the engine's shard ring driver where `unsafe` is allowed, and every
//! `unsafe` block carries a `// SAFETY:` line.
