//! Trackers: HTTP (BEP 3, BEP 23, BEP 7) and UDP (BEP 15) message formats, tiers (BEP 12),
//! and the announcer runtime. OWNER: helper D.
