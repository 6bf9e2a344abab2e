//! The shared, lock-free piece picker. OWNER: helper E.
