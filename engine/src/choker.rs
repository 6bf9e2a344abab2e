//! The choker (sans-IO). OWNER: helper B (later).
