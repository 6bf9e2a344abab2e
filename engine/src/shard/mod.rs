//! Shard runtime. OWNER: lead.
