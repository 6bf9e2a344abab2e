//! OWNER: helper B.
