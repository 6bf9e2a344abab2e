//! Magnet URIs (BEP 9 `xt=urn:btih:`, hex or base32; `dn`, `tr`, `x.pe`, BEP 53 `so`).
//!
//! OWNER: helper A.
