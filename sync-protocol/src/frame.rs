//! Frames on a QUIC stream: a 4-byte big-endian length, then that many
//! bytes: one encoding byte (0: JSON, 1: zstd-compressed JSON) and the
//! message.
//!
//! Limits protect the receiver: a frame longer than the codec's maximum is
//! refused from its length alone, before any of it is buffered, and a
//! compressed payload may not expand beyond [`MAX_DECODED`]. Senders keep
//! under the limits by chunking (a policy snapshot goes out in chunks of
//! users, the journal in batches). Compression is used only for bulk
//! messages, and only when it saves at least an eighth.

use bytes::{Buf, BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::message::Message;

/// Default largest frame, length prefix excluded.
pub const MAX_FRAME: usize = 8 << 20;
/// Largest message after decompression.
pub const MAX_DECODED: usize = 32 << 20;
/// Bulk messages shorter than this are sent as they are.
const COMPRESS_FROM: usize = 1024;
/// zstd level: fast, and most of the gain on JSON.
const LEVEL: i32 = 3;

const JSON: u8 = 0;
const ZSTD_JSON: u8 = 1;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The length prefix exceeds the receiver's maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The announced or encoded length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// A frame with no encoding byte.
    #[error("empty frame")]
    Empty,
    /// An encoding byte this revision does not know.
    #[error("unknown frame encoding {0}")]
    UnknownEncoding(u8),
    /// The compressed payload is corrupt or expands beyond [`MAX_DECODED`].
    #[error("compressed payload unusable: {0}")]
    Compression(std::io::Error),
    /// The payload is not a message.
    #[error("malformed message: {0}")]
    Malformed(#[from] serde_json::Error),
    /// The stream failed.
    #[error("stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Encodes and decodes [`Message`] frames (a `tokio_util` codec, so it
/// frames any `AsyncRead`/`AsyncWrite`, a QUIC stream among them).
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame: usize,
    compress: bool,
}

impl Default for FrameCodec {
    fn default() -> Self {
        FrameCodec {
            max_frame: MAX_FRAME,
            compress: true,
        }
    }
}

impl FrameCodec {
    /// A codec refusing frames over `max_frame` bytes; `compress` off sends
    /// every payload as plain JSON (it still reads compressed frames).
    pub fn new(max_frame: usize, compress: bool) -> FrameCodec {
        FrameCodec {
            max_frame,
            compress,
        }
    }

    /// The encoded frame of `message`, length prefix included.
    pub fn encode_to_vec(&self, message: &Message) -> Result<Vec<u8>, FrameError> {
        let mut out = BytesMut::new();
        self.clone().encode(message, &mut out)?;
        Ok(out.to_vec())
    }
}

impl Decoder for FrameCodec {
    type Item = Message;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        let Some(prefix) = src.get(..4) else {
            return Ok(None);
        };
        let len = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        let frame = src.split_to(len);
        decode_payload(&frame).map(Some)
    }
}

/// The message in one frame's body (encoding byte and payload).
pub fn decode_payload(frame: &[u8]) -> Result<Message, FrameError> {
    let (&encoding, payload) = frame.split_first().ok_or(FrameError::Empty)?;
    match encoding {
        JSON => Ok(Message::from_json(payload)?),
        ZSTD_JSON => {
            let json =
                zstd::bulk::decompress(payload, MAX_DECODED).map_err(FrameError::Compression)?;
            Ok(Message::from_json(&json)?)
        }
        other => Err(FrameError::UnknownEncoding(other)),
    }
}

impl Encoder<&Message> for FrameCodec {
    type Error = FrameError;

    fn encode(&mut self, message: &Message, dst: &mut BytesMut) -> Result<(), FrameError> {
        let json = serde_json::to_vec(message)?;
        let compressed = (self.compress && message.is_bulk() && json.len() >= COMPRESS_FROM)
            .then(|| zstd::bulk::compress(&json, LEVEL))
            .transpose()?
            .filter(|c| c.len() <= json.len() - json.len() / 8);
        let (encoding, payload) = match &compressed {
            Some(c) => (ZSTD_JSON, c.as_slice()),
            None => (JSON, json.as_slice()),
        };
        let len = payload.len() + 1;
        if len > self.max_frame {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame,
            });
        }
        dst.reserve(4 + len);
        dst.put_u32(len as u32);
        dst.put_u8(encoding);
        dst.put_slice(payload);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{JournalBatch, JournalRecord, PolicyApplied};

    fn record(seq: u64) -> JournalRecord {
        JournalRecord {
            seq,
            job: format!("0190f0a0-0000-7000-8000-{seq:012}"),
            queue: "secure".into(),
            job_id: seq as i32,
            user: "alice".into(),
            device: "lobby".into(),
            pages: Some(3),
            pages_exact: true,
            sheets: Some(3),
            copies: 1,
            color: "monochrome".into(),
            sides: "one-sided".into(),
            media: None,
            time_ms: 1_795_015_800_000 + seq as i64,
            outcome: "completed".into(),
            origin_site: None,
        }
    }

    fn journal(n: u64) -> Message {
        Message::Journal(JournalBatch {
            epoch: "e1".into(),
            after: 0,
            records: (1..=n).map(record).collect(),
        })
    }

    #[test]
    fn bulk_is_compressed_when_it_shrinks_and_control_never() {
        let codec = FrameCodec::default();
        let bulk = codec.encode_to_vec(&journal(200)).unwrap();
        assert_eq!(bulk[4], ZSTD_JSON);
        let plain = FrameCodec::new(MAX_FRAME, false)
            .encode_to_vec(&journal(200))
            .unwrap();
        assert_eq!(plain[4], JSON);
        assert!(
            bulk.len() * 4 < plain.len(),
            "{} vs {}",
            bulk.len(),
            plain.len()
        );
        let small = codec
            .encode_to_vec(&Message::PolicyApplied(PolicyApplied {
                version: 3,
                unknown_rules: vec![],
            }))
            .unwrap();
        assert_eq!(small[4], JSON);
    }

    #[test]
    fn frames_decode_whatever_the_read_boundaries() {
        let mut codec = FrameCodec::default();
        let mut wire = codec.encode_to_vec(&journal(50)).unwrap();
        wire.extend(
            codec
                .encode_to_vec(&Message::PolicyApplied(PolicyApplied {
                    version: 3,
                    unknown_rules: vec![],
                }))
                .unwrap(),
        );
        for step in [1, 7, 4096] {
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                buf.extend_from_slice(chunk);
                while let Some(m) = codec.decode(&mut buf).unwrap() {
                    got.push(m);
                }
            }
            assert_eq!(
                got,
                [
                    journal(50),
                    Message::PolicyApplied(PolicyApplied {
                        version: 3,
                        unknown_rules: vec![],
                    })
                ]
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn an_oversized_frame_is_refused_from_its_length_alone() {
        let mut codec = FrameCodec::new(1024, true);
        let mut buf = BytesMut::from(&[0x00, 0x10, 0x00, 0x00][..]);
        assert!(matches!(
            codec.decode(&mut buf),
            Err(FrameError::TooLarge {
                len: 0x100000,
                max: 1024
            })
        ));
        // And a sender does not produce one.
        let big = FrameCodec::new(1024, false).encode_to_vec(&journal(100));
        assert!(matches!(big, Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn bad_payloads_are_errors_not_panics() {
        assert!(matches!(decode_payload(&[]), Err(FrameError::Empty)));
        assert!(matches!(
            decode_payload(&[9, b'{']),
            Err(FrameError::UnknownEncoding(9))
        ));
        assert!(matches!(
            decode_payload(&[0, b'{']),
            Err(FrameError::Malformed(_))
        ));
        assert!(matches!(
            decode_payload(&[1, 1, 2, 3]),
            Err(FrameError::Compression(_))
        ));
        // A zstd bomb: a small frame announcing far more than MAX_DECODED.
        let bomb = zstd::bulk::compress(&vec![b' '; MAX_DECODED + 1], 19).unwrap();
        let mut frame = vec![ZSTD_JSON];
        frame.extend(bomb);
        assert!(frame.len() < 64 * 1024);
        assert!(matches!(
            decode_payload(&frame),
            Err(FrameError::Compression(_))
        ));
    }
}
