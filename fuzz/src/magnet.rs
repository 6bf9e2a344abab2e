//! Magnet parser: never panics; what it accepts prints back to a URI that parses to the same.

use ringtorrent::magnet::Magnet;

pub fn magnet(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(m) = Magnet::parse(s) {
        let again = Magnet::parse(&m.to_uri()).expect("to_uri output parses");
        assert_eq!(again, m);
    }
}
