//! Per-peer sans-IO state machine. OWNER: lead.
