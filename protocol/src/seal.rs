//! Secure mode (DESIGN §8, docs/security.md): every frame, both ways, sealed with
//! ChaCha20-Poly1305 under a key derived from a shared secret.
//!
//! A sealed frame is `prefix ‖ header ‖ ciphertext ‖ tag`. The prefix is a command's channel and
//! its space (empty for turret → HQ frames) and stays readable so that ZeroMQ's subscription
//! filter still works; it is authenticated with the header. The header is
//!
//! ```text
//! "\0OCS" (4) | direction (1: 'H' HQ → turrets, 'T' turret → HQ) | session (16) | sender (16)
//!        | counter (8, big-endian) | sealed at, Unix ms (8, big-endian)
//! ```
//!
//! The key is HKDF-SHA256 of the secret, expanded with the direction, the HQ's session and the
//! sender (zeros for the HQ, the turret's uuid for a turret), so that every key belongs to one
//! sender of one HQ run, and its nonce is the sender's counter: a nonce is never reused under a
//! key. A receiver accepts each sender's counters only upwards (ZeroMQ keeps one sender's frames
//! in order), so a replayed frame is refused; the HQ accepts only its own session, so frames of
//! an earlier run are refused too; a turret, which follows whatever HQ session speaks to it,
//! accepts a session it has not seen only from a frame sealed within the last minute.

use std::collections::HashMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::hkdf::{Salt, HKDF_SHA256};
use ring::rand::{SecureRandom, SystemRandom};

use crate::message::DecodeError;

const MAGIC: &[u8; 4] = b"\0OCS";
const TO_TURRETS: u8 = b'H';
const TO_HQ: u8 = b'T';
const HEADER_LEN: usize = 4 + 1 + 16 + 16 + 8 + 8;
const TAG_LEN: usize = 16;
/// Bytes a sealed frame has beyond its plaintext (and prefix).
pub const SEAL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// A turret takes an HQ session it has not heard before only from a frame sealed this recently.
const FRESH_MS: u64 = 60_000;
/// Shorter secrets are refused: they could be guessed offline from one captured frame.
const MIN_SECRET_BYTES: usize = 16;
/// Senders (or HQ sessions) a receiver remembers at most; bounds what a peer with the secret
/// can make it hold.
const MAX_PEERS: usize = 4096;

/// The shared secret of secure mode.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl PartialEq for Secret {
    fn eq(&self, other: &Secret) -> bool {
        self.0 == other.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{path}: {source}")]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{what}: the secret is {len} bytes long; secure mode needs at least {MIN_SECRET_BYTES}"
    )]
    Short { what: String, len: usize },
}

impl Secret {
    /// The secret in `bytes`, surrounding whitespace (a file's final newline) left out; `what`
    /// names where it came from in errors.
    pub fn new(bytes: &[u8], what: &str) -> Result<Secret, SecretError> {
        let start = bytes.iter().position(|b| !b.is_ascii_whitespace());
        let end = bytes.iter().rposition(|b| !b.is_ascii_whitespace());
        let trimmed = match (start, end) {
            (Some(a), Some(b)) => &bytes[a..=b],
            _ => &[][..],
        };
        if trimmed.len() < MIN_SECRET_BYTES {
            return Err(SecretError::Short {
                what: what.to_owned(),
                len: trimmed.len(),
            });
        }
        Ok(Secret(trimmed.to_vec()))
    }

    pub fn from_file(path: &Path) -> Result<Secret, SecretError> {
        let bytes = std::fs::read(path).map_err(|source| SecretError::Read {
            path: path.to_owned(),
            source,
        })?;
        Secret::new(&bytes, &path.display().to_string())
    }

    /// `OCT_SECRET` from the environment, if it is set.
    pub fn from_env() -> Result<Option<Secret>, SecretError> {
        match std::env::var_os("OCT_SECRET") {
            None => Ok(None),
            Some(v) => Secret::new(v.as_encoded_bytes(), "OCT_SECRET").map(Some),
        }
    }

    fn key(&self, direction: u8, session: &[u8; 16], sender: &[u8; 16]) -> LessSafeKey {
        let prk = Salt::new(HKDF_SHA256, b"oct seal v1").extract(&self.0);
        let info: [&[u8]; 3] = [&[direction], session, sender];
        // Expanding to one AEAD key never exceeds HKDF's output limit.
        let okm = prk
            .expand(&info, &CHACHA20_POLY1305)
            .expect("HKDF expands to one ChaCha20 key");
        LessSafeKey::new(UnboundKey::from(okm))
    }
}

/// An HQ run's identity: random per HQ process, announced (hex) in `status_request`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Session(pub [u8; 16]);

impl Session {
    pub fn random() -> Session {
        let mut b = [0u8; 16];
        // The system's random source failing is not something a load test can go on without.
        SystemRandom::new()
            .fill(&mut b)
            .expect("the system's random source");
        Session(b)
    }

    pub fn to_hex(self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(s: &str) -> Option<Session> {
        if s.len() != 32 || !s.is_ascii() {
            return None;
        }
        let mut b = [0u8; 16];
        for (i, out) in b.iter_mut().enumerate() {
            *out = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Session(b))
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; NONCE_LEN];
    n[NONCE_LEN - 8..].copy_from_slice(&counter.to_be_bytes());
    Nonce::assume_unique_for_key(n)
}

/// Seals one sender's frames.
pub struct Sealer {
    key: LessSafeKey,
    direction: u8,
    session: [u8; 16],
    sender: [u8; 16],
    counter: u64,
}

impl Sealer {
    /// The HQ's sealer for its commands.
    pub fn to_turrets(secret: &Secret, session: Session) -> Sealer {
        Sealer::new(secret, TO_TURRETS, session, [0; 16])
    }

    /// A turret's sealer for what it sends to the HQ of `session`; `sender` is its uuid.
    pub fn to_hq(secret: &Secret, session: Session, sender: [u8; 16]) -> Sealer {
        Sealer::new(secret, TO_HQ, session, sender)
    }

    fn new(secret: &Secret, direction: u8, session: Session, sender: [u8; 16]) -> Sealer {
        Sealer {
            key: secret.key(direction, &session.0, &sender),
            direction,
            session: session.0,
            sender,
            counter: 0,
        }
    }

    /// Appends `prefix` (a command's channel and space, or nothing) and `plain` sealed to `out`.
    pub fn seal(&mut self, prefix: &[u8], plain: &[u8], out: &mut Vec<u8>) {
        self.counter += 1;
        let start = out.len();
        out.reserve(prefix.len() + SEAL_OVERHEAD + plain.len());
        out.extend_from_slice(prefix);
        out.extend_from_slice(MAGIC);
        out.push(self.direction);
        out.extend_from_slice(&self.session);
        out.extend_from_slice(&self.sender);
        out.extend_from_slice(&self.counter.to_be_bytes());
        out.extend_from_slice(&now_ms().to_be_bytes());
        let body = out.len();
        out.extend_from_slice(plain);
        let (head, text) = out.split_at_mut(body);
        let aad = Aad::from(&head[start..]);
        // ChaCha20-Poly1305 refuses only inputs of hundreds of gigabytes.
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce(self.counter), aad, text)
            .expect("a frame far below the AEAD's size limit");
        out.extend_from_slice(tag.as_ref());
    }
}

struct Peer {
    key: LessSafeKey,
    last_counter: u64,
}

/// Opens the sealed frames of one direction, refusing tampered, replayed and stale ones.
pub struct Opener {
    secret: Secret,
    direction: u8,
    /// The HQ's own session: frames of any other are stale. `None` on a turret.
    own_session: Option<[u8; 16]>,
    peers: HashMap<([u8; 16], [u8; 16]), Peer>,
}

impl Opener {
    /// The HQ's opener for what turrets send to its session.
    pub fn for_hq(secret: &Secret, session: Session) -> Opener {
        Opener {
            secret: secret.clone(),
            direction: TO_HQ,
            own_session: Some(session.0),
            peers: HashMap::new(),
        }
    }

    /// A turret's opener for the commands of any HQ session.
    pub fn for_turret(secret: &Secret) -> Opener {
        Opener {
            secret: secret.clone(),
            direction: TO_TURRETS,
            own_session: None,
            peers: HashMap::new(),
        }
    }

    /// Opens `frame` (what follows `prefix`, which is authenticated with it): the plaintext goes
    /// to `out` (cleared first), and the session it was sealed for is returned.
    pub fn open(
        &mut self,
        prefix: &[u8],
        frame: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Session, DecodeError> {
        out.clear();
        out.extend_from_slice(frame);
        let (session, plain) = self.open_in_place(prefix, out)?;
        out.copy_within(plain.clone(), 0);
        out.truncate(plain.len());
        Ok(session)
    }

    /// Opens `frame` where it lies (the HQ's receive path: no copy): returns the session it was
    /// sealed for and where in `frame` the plaintext now is. On an error `frame` may have been
    /// overwritten.
    pub fn open_in_place(
        &mut self,
        prefix: &[u8],
        frame: &mut [u8],
    ) -> Result<(Session, std::ops::Range<usize>), DecodeError> {
        if !frame.starts_with(MAGIC) {
            return Err(DecodeError::Unsealed);
        }
        if frame.len() < SEAL_OVERHEAD || frame[4] != self.direction {
            return Err(DecodeError::Tampered);
        }
        let field = |at: usize| -> [u8; 16] { frame[at..at + 16].try_into().unwrap_or([0; 16]) };
        let (session, sender) = (field(5), field(21));
        let number = |at: usize| u64::from_be_bytes(frame[at..at + 8].try_into().unwrap_or([0; 8]));
        let (counter, sealed_ms) = (number(37), number(45));
        if self.own_session.is_some_and(|own| own != session) {
            return Err(DecodeError::StaleSession);
        }
        let id = (session, sender);
        let mut new_peer = None;
        let key = match self.peers.get(&id) {
            Some(p) => &p.key,
            None => {
                if self.own_session.is_none() && now_ms().abs_diff(sealed_ms) > FRESH_MS {
                    return Err(DecodeError::Replayed);
                }
                &new_peer
                    .insert(Peer {
                        key: self.secret.key(self.direction, &session, &sender),
                        last_counter: 0,
                    })
                    .key
            }
        };
        // The AAD is the prefix and the header: no allocation when there is no prefix (the HQ).
        let (header, body) = frame.split_at_mut(HEADER_LEN);
        let joined;
        let aad: &[u8] = if prefix.is_empty() {
            header
        } else {
            joined = [prefix, &header[..]].concat();
            &joined
        };
        let len = key
            .open_in_place(nonce(counter), Aad::from(aad), body)
            .map_err(|_| DecodeError::Tampered)?
            .len();
        match new_peer {
            Some(mut peer) => {
                if self.peers.len() >= MAX_PEERS {
                    self.peers.clear();
                }
                peer.last_counter = counter;
                self.peers.insert(id, peer);
            }
            None => {
                let peer = self.peers.get_mut(&id).expect("looked up above");
                if counter <= peer.last_counter {
                    return Err(DecodeError::Replayed);
                }
                peer.last_counter = counter;
            }
        }
        Ok((Session(session), HEADER_LEN..HEADER_LEN + len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(s: &str) -> Secret {
        Secret::new(s.as_bytes(), "test").unwrap()
    }

    const SENDER: [u8; 16] = [7; 16];

    #[test]
    fn sealed_frames_open_once_and_carry_their_header_in_clear() {
        let s = secret("correct horse battery staple");
        let session = Session([1; 16]);
        let mut sealer = Sealer::to_hq(&s, session, SENDER);
        let mut opener = Opener::for_hq(&s, session);
        let plain = br#"{"heartbeat": 1}"#;
        let mut frame = Vec::new();
        sealer.seal(b"", plain, &mut frame);
        assert_eq!(frame.len(), plain.len() + SEAL_OVERHEAD);
        assert_eq!(&frame[..5], b"\0OCST");
        assert_eq!(&frame[5..21], &[1; 16]);
        assert_eq!(&frame[21..37], &SENDER);
        assert_eq!(&frame[37..45], &1u64.to_be_bytes());
        assert!(!frame.windows(plain.len()).any(|w| w == plain), "encrypted");
        let mut out = Vec::new();
        assert_eq!(opener.open(b"", &frame, &mut out), Ok(session));
        assert_eq!(out, plain);
        // The same frame again is a replay; the next one opens.
        assert_eq!(
            opener.open(b"", &frame, &mut out),
            Err(DecodeError::Replayed)
        );
        let mut second = Vec::new();
        sealer.seal(b"", plain, &mut second);
        assert_eq!(opener.open(b"", &second, &mut out), Ok(session));
        assert_eq!(
            opener.open(b"", &frame, &mut out),
            Err(DecodeError::Replayed)
        );
    }

    #[test]
    fn every_flipped_byte_and_every_wrong_key_is_refused() {
        let s = secret("correct horse battery staple");
        let session = Session([1; 16]);
        let mut frame = Vec::new();
        Sealer::to_turrets(&s, session).seal(b"chan ", b"{\"command\":\"kill\"}", &mut frame);
        let body = &frame[5..];
        for i in 0..body.len() {
            let mut bad = body.to_vec();
            bad[i] ^= 0x20;
            let got = Opener::for_turret(&s).open(b"chan ", &bad, &mut Vec::new());
            let want = if i < 4 {
                DecodeError::Unsealed
            } else {
                DecodeError::Tampered
            };
            // A flipped timestamp can also make the frame look too old: refused either way.
            assert!(
                got == Err(want.clone()) || got == Err(DecodeError::Replayed),
                "byte {i}: {got:?}"
            );
        }
        let mut out = Vec::new();
        assert_eq!(
            Opener::for_turret(&s).open(b"other ", body, &mut out),
            Err(DecodeError::Tampered),
            "the channel is authenticated"
        );
        assert_eq!(
            Opener::for_turret(&secret("another secret, also long")).open(b"chan ", body, &mut out),
            Err(DecodeError::Tampered)
        );
        assert_eq!(
            Opener::for_hq(&s, session).open(b"chan ", body, &mut out),
            Err(DecodeError::Tampered),
            "a command is not a turret's frame"
        );
        assert_eq!(
            Opener::for_turret(&s).open(b"", br#"{"command":"kill"}"#, &mut out),
            Err(DecodeError::Unsealed)
        );
        assert_eq!(
            Opener::for_turret(&s).open(b"", &body[..20], &mut out),
            Err(DecodeError::Tampered)
        );
        assert!(Opener::for_turret(&s)
            .open(b"chan ", body, &mut out)
            .is_ok());
    }

    #[test]
    fn the_hq_refuses_other_sessions_and_a_turret_refuses_old_unknown_ones() {
        let s = secret("correct horse battery staple");
        let mut frame = Vec::new();
        Sealer::to_hq(&s, Session([2; 16]), SENDER).seal(b"", b"{}", &mut frame);
        assert_eq!(
            Opener::for_hq(&s, Session([1; 16])).open(b"", &frame, &mut Vec::new()),
            Err(DecodeError::StaleSession)
        );
        // An HQ frame sealed two minutes ago, of a session this turret never heard: a replay.
        let mut old = Vec::new();
        Sealer::to_turrets(&s, Session([3; 16])).seal(b" ", b"{}", &mut old);
        let stamp = (now_ms() - 120_000).to_be_bytes();
        old[1 + 45..1 + 53].copy_from_slice(&stamp);
        assert_eq!(
            Opener::for_turret(&s).open(b" ", &old[1..], &mut Vec::new()),
            Err(DecodeError::Replayed)
        );
    }

    #[test]
    fn secrets_are_trimmed_and_must_be_long_enough() {
        assert!(Secret::new(b"  0123456789abcdef\n", "f").is_ok());
        let e = Secret::new(b"short\n", "secret.txt")
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "secret.txt: the secret is 5 bytes long; secure mode needs at least 16"
        );
        let s = Session::random();
        assert_eq!(Session::from_hex(&s.to_hex()), Some(s));
        assert_eq!(Session::from_hex("zz"), None);
    }
}
