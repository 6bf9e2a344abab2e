//! BEP 11 peer exchange: `PexMessage::parse` and `PexState::incoming`.
//!
//! The first input byte is the number of seconds between two deliveries of the same payload
//! (the rest of the input) to one `PexState`. Properties checked, besides "never panics":
//! - an accepted message has only dialable addresses (no port 0, no unspecified or multicast
//!   IP), and re-encoding it gives a message that parses to the same number of added and
//!   dropped peers and encodes to the same bytes again (encoding is stable after one round);
//! - `incoming` accepts exactly what `parse` accepts, returns at most `MAX_ACCEPTED` peers, and
//!   ignores a second delivery sooner than `MIN_INCOMING_INTERVAL`.

use std::time::{Duration, Instant};

use ringtorrent::pex::{PexMessage, PexState, MAX_ACCEPTED, MIN_INCOMING_INTERVAL};

pub fn pex(data: &[u8]) {
    let Some((&gap, payload)) = data.split_first() else {
        return;
    };
    let parsed = PexMessage::parse(payload);
    if let Ok(m) = &parsed {
        for a in m
            .added
            .iter()
            .map(|p| p.addr)
            .chain(m.dropped.iter().copied())
        {
            assert!(a.port() != 0 && !a.ip().is_unspecified() && !a.ip().is_multicast());
        }
        let mut once = Vec::new();
        m.encode(&mut once);
        let back = PexMessage::parse(&once).expect("our own encoding parses");
        assert_eq!(back.added.len(), m.added.len());
        assert_eq!(back.dropped.len(), m.dropped.len());
        let mut twice = Vec::new();
        back.encode(&mut twice);
        let mut thrice = Vec::new();
        PexMessage::parse(&twice)
            .expect("our own encoding parses")
            .encode(&mut thrice);
        assert_eq!(twice, thrice);
    }
    let t0 = Instant::now();
    let mut state = PexState::new(t0);
    let first = state.incoming(t0, payload);
    assert_eq!(first.is_ok(), parsed.is_ok());
    if let Ok(first) = first {
        let peers = first.expect("the first message is never rate-limited");
        assert!(peers.len() <= MAX_ACCEPTED);
        let later = t0 + Duration::from_secs(u64::from(gap));
        let second = state.incoming(later, payload).expect("parsed once already");
        assert_eq!(
            second.is_none(),
            later.duration_since(t0) < MIN_INCOMING_INTERVAL
        );
    }
}
