//! What carries a connection's bytes, under the wire reader. Received bytes pass through
//! [`Transport::receive`] before the handshake parser and the wire reader see them, and every
//! byte we send through [`Transport::seal_in_place`] on its way into the send queue. The codec
//! and the peer session therefore only ever handle plaintext, whatever the transport.
//!
//! - Plain TCP passes bytes as they are (and lets the uploader hand the kernel shared buffers
//!   and file ranges).
//! - MSE/PE (`crate::mse`): the Diffie-Hellman handshake runs here, its own bytes going out
//!   as they are; afterwards an RC4 stream decrypts received bytes where they lie (in the
//!   ring's receive buffer, no copy) and encrypts sends as they are queued. An RC4 stream is
//!   one per connection, so PIECE messages to it are copies (never shared buffers or files).
//!   With plaintext selected the connection is plain TCP from then on.
//! - An incoming connection's first bytes say which: a BitTorrent handshake, or MSE.

use crate::api::DisconnectReason;
use crate::mse::{
    self, classify_incoming, EncryptionPolicy, Incoming, Initiator, Responder, SkeyTable, Step,
    StreamCipher,
};
use crate::types::InfoHash;

/// An MSE handshake under way.
pub enum Negotiation {
    Initiator(Box<Initiator>),
    Responder(Box<Responder>),
}

/// See the module doc.
pub enum Transport {
    /// Plain TCP (or MSE with plaintext selected).
    Plain,
    /// An incoming connection before its first bytes tell a plain handshake from MSE; the
    /// bytes seen so far (fewer than 20).
    Detecting {
        policy: EncryptionPolicy,
        seen: Vec<u8>,
    },
    /// The MSE handshake is running.
    Negotiating(Negotiation),
    /// MSE with RC4 for the payload.
    Rc4(Box<StreamCipher>),
}

/// What received bytes came to.
pub enum Opened {
    /// They are plaintext now, where they were (the caller reads its own buffer).
    InPlace,
    /// Plaintext to read instead of the buffer (after a handshake: its initial payload and
    /// what followed it), and the torrent an MSE handshake named.
    Owned {
        plain: Vec<u8>,
        skey: Option<InfoHash>,
    },
    /// Nothing for the reader yet (the handshake consumed them).
    Nothing,
}

impl Transport {
    /// The transport of an incoming connection under `policy`.
    pub fn incoming(policy: EncryptionPolicy) -> Transport {
        Transport::Detecting {
            policy,
            seen: Vec::new(),
        }
    }

    /// Starts an outgoing MSE handshake for `info_hash` whose initial payload is our
    /// BitTorrent handshake; its first bytes go to `send_raw`.
    pub fn initiate(
        info_hash: InfoHash,
        policy: EncryptionPolicy,
        our_handshake: &[u8],
        send_raw: &mut Vec<u8>,
    ) -> Result<Transport, DisconnectReason> {
        let mut ini = Initiator::new(info_hash, policy, our_handshake, &mut rand::rng())
            .map_err(|_| DisconnectReason::Internal("handshake longer than MSE's IA"))?;
        ini.start(send_raw);
        Ok(Transport::Negotiating(Negotiation::Initiator(Box::new(
            ini,
        ))))
    }

    /// Whether the MSE handshake is still running (a close now says something about the
    /// peer's support for it).
    pub fn negotiating(&self) -> bool {
        matches!(self, Transport::Negotiating(_))
    }

    /// Whether sends may carry shared buffers and file ranges the kernel sends (`sendfile`,
    /// mapped sends, cached PIECE messages) as they are: false for a transport that changes
    /// the bytes, which must be copies of their own.
    pub fn passes_through(&self) -> bool {
        matches!(self, Transport::Plain)
    }

    /// Opens received bytes: decrypts them in place, or runs the handshake with them (its
    /// replies go to `send_raw`, to be sent as they are before anything sealed). `skeys`
    /// names the torrents an incoming MSE handshake may ask for.
    pub fn receive(
        &mut self,
        data: &mut [u8],
        send_raw: &mut Vec<u8>,
        skeys: &SkeyTable,
    ) -> Result<Opened, DisconnectReason> {
        match self {
            Transport::Plain => Ok(Opened::InPlace),
            Transport::Rc4(c) => {
                c.decrypt_in_place(data);
                Ok(Opened::InPlace)
            }
            Transport::Detecting { policy, seen } => {
                seen.extend_from_slice(data);
                match classify_incoming(seen) {
                    Incoming::NeedMore => Ok(Opened::Nothing),
                    Incoming::Plain if *policy == EncryptionPolicy::Require => {
                        Err(DisconnectReason::PlaintextRefused)
                    }
                    Incoming::Plain => {
                        let bytes = std::mem::take(seen);
                        *self = Transport::Plain;
                        Ok(Opened::Owned {
                            plain: bytes,
                            skey: None,
                        })
                    }
                    Incoming::Encrypted if *policy == EncryptionPolicy::Disable => {
                        Err(DisconnectReason::EncryptedRefused)
                    }
                    Incoming::Encrypted => {
                        let bytes = std::mem::take(seen);
                        let resp = Responder::new(*policy, &mut rand::rng());
                        *self = Transport::Negotiating(Negotiation::Responder(Box::new(resp)));
                        self.negotiate(&bytes, send_raw, skeys)
                    }
                }
            }
            Transport::Negotiating(_) => self.negotiate(data, send_raw, skeys),
        }
    }

    /// Feeds the MSE handshake; once it is done, switches to what it agreed on.
    fn negotiate(
        &mut self,
        data: &[u8],
        send_raw: &mut Vec<u8>,
        skeys: &SkeyTable,
    ) -> Result<Opened, DisconnectReason> {
        let Transport::Negotiating(n) = self else {
            return Err(DisconnectReason::Internal("negotiate without a handshake"));
        };
        let step = match n {
            Negotiation::Initiator(i) => i.on_data(data, send_raw),
            Negotiation::Responder(r) => r.on_data(data, send_raw, skeys),
        }
        .map_err(DisconnectReason::Encryption)?;
        let Step::Done(est) = step else {
            return Ok(Opened::Nothing);
        };
        let mse::Established {
            cipher,
            initial_payload,
            rest,
            info_hash,
            ..
        } = *est;
        *self = match cipher {
            Some(c) => Transport::Rc4(Box::new(c)),
            None => Transport::Plain,
        };
        let mut plain = initial_payload;
        plain.extend_from_slice(&rest);
        Ok(Opened::Owned {
            plain,
            skey: Some(info_hash),
        })
    }

    /// Readies bytes for the socket, in place, in stream order.
    pub fn seal_in_place(&mut self, bytes: &mut [u8]) {
        if let Transport::Rc4(c) = self {
            c.encrypt_in_place(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ih() -> InfoHash {
        InfoHash([7u8; 20])
    }

    /// Runs an initiator and a responder transport against each other in memory until both
    /// are established; returns them and what each side's reader got.
    fn pair(ours: EncryptionPolicy, theirs: EncryptionPolicy) -> (Transport, Transport, Vec<u8>) {
        let skeys: SkeyTable = [ih()].into_iter().collect();
        let mut to_resp = Vec::new();
        let hs = [0x13u8; 68];
        let mut a = Transport::initiate(ih(), ours, &hs, &mut to_resp).unwrap();
        let mut b = Transport::incoming(theirs);
        let mut got_b = Vec::new();
        for _ in 0..8 {
            let mut to_init = Vec::new();
            if !to_resp.is_empty() {
                let mut buf = std::mem::take(&mut to_resp);
                match b.receive(&mut buf, &mut to_init, &skeys).unwrap() {
                    Opened::Owned { plain, skey } => {
                        assert_eq!(skey, Some(ih()));
                        got_b.extend_from_slice(&plain);
                    }
                    Opened::InPlace => got_b.extend_from_slice(&buf),
                    Opened::Nothing => {}
                }
            }
            if !to_init.is_empty() {
                a.receive(&mut to_init, &mut to_resp, &skeys).unwrap();
            }
            if !a.negotiating() && !b.negotiating() && to_resp.is_empty() {
                break;
            }
        }
        (a, b, got_b)
    }

    #[test]
    fn an_encrypted_pair_carries_the_handshake_then_rc4_both_ways() {
        let (mut a, mut b, got_b) = pair(EncryptionPolicy::Require, EncryptionPolicy::Prefer);
        assert_eq!(
            got_b, [0x13u8; 68],
            "the initial payload reaches the reader"
        );
        assert!(matches!(a, Transport::Rc4(_)) && matches!(b, Transport::Rc4(_)));
        assert!(!a.passes_through() && !b.passes_through());
        let skeys = SkeyTable::new();
        let msg = b"\x00\x00\x00\x01\x02 interested".to_vec();
        let mut wire = msg.clone();
        a.seal_in_place(&mut wire);
        assert_ne!(wire, msg, "sealed bytes are not the plaintext");
        assert!(matches!(
            b.receive(&mut wire, &mut Vec::new(), &skeys),
            Ok(Opened::InPlace)
        ));
        assert_eq!(wire, msg);
        let mut back = msg.clone();
        b.seal_in_place(&mut back);
        a.receive(&mut back, &mut Vec::new(), &skeys).unwrap();
        assert_eq!(back, msg);
    }

    #[test]
    fn plaintext_selected_becomes_plain_tcp() {
        let (a, b, got_b) = pair(EncryptionPolicy::Prefer, EncryptionPolicy::Prefer);
        assert_eq!(got_b, [0x13u8; 68]);
        assert!(a.passes_through() && b.passes_through());
    }

    #[test]
    fn an_incoming_plain_handshake_passes_through_unless_encryption_is_required() {
        let skeys = SkeyTable::new();
        let mut hs = b"\x13BitTorrent protocol".to_vec();
        hs.resize(68, 0);
        let mut t = Transport::incoming(EncryptionPolicy::Prefer);
        // Fewer than 20 bytes cannot tell yet.
        let mut first = hs[..10].to_vec();
        assert!(matches!(
            t.receive(&mut first, &mut Vec::new(), &skeys),
            Ok(Opened::Nothing)
        ));
        let mut rest = hs[10..].to_vec();
        match t.receive(&mut rest, &mut Vec::new(), &skeys) {
            Ok(Opened::Owned { plain, skey: None }) => assert_eq!(plain, hs),
            _ => panic!("a plain handshake is read as it is"),
        }
        assert!(t.passes_through());
        let mut t = Transport::incoming(EncryptionPolicy::Require);
        assert_eq!(
            t.receive(&mut hs.clone(), &mut Vec::new(), &skeys).err(),
            Some(DisconnectReason::PlaintextRefused)
        );
    }

    #[test]
    fn an_incoming_mse_handshake_is_refused_when_encryption_is_disabled() {
        let skeys: SkeyTable = [ih()].into_iter().collect();
        let mut out = Vec::new();
        Transport::initiate(ih(), EncryptionPolicy::Prefer, &[], &mut out).unwrap();
        let mut t = Transport::incoming(EncryptionPolicy::Disable);
        assert_eq!(
            t.receive(&mut out, &mut Vec::new(), &skeys).err(),
            Some(DisconnectReason::EncryptedRefused)
        );
        // With encryption allowed the same bytes start a responder, which answers.
        let mut t = Transport::incoming(EncryptionPolicy::Prefer);
        let mut reply = Vec::new();
        let mut again = Vec::new();
        Transport::initiate(ih(), EncryptionPolicy::Prefer, &[], &mut again).unwrap();
        assert!(matches!(
            t.receive(&mut again, &mut reply, &skeys),
            Ok(Opened::Nothing)
        ));
        assert!(t.negotiating() && reply.len() >= 96, "Yb and PadB go out");
    }
}
