//! Test kit. OWNER: helper F.
