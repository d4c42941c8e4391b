//! The sync protocol's decoder on arbitrary bytes: the frame codec (length
//! prefix, encoding byte, zstd with its expansion bound) and the message
//! decoder (envelope, then the body of each kind). Whatever the input, it
//! must return a message or an error, never panic, and a decoded message
//! must encode and decode to itself.

#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use sync_protocol::frame::FrameCodec;
use tokio_util::codec::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut codec = FrameCodec::new(64 * 1024, true);
    let mut buf = BytesMut::from(data);
    while let Ok(Some(message)) = codec.decode(&mut buf) {
        if let Ok(wire) = FrameCodec::new(16 << 20, true).encode_to_vec(&message) {
            let mut again = BytesMut::from(&wire[..]);
            let decoded = FrameCodec::new(16 << 20, true).decode(&mut again);
            assert!(matches!(decoded, Ok(Some(ref m)) if *m == message));
        }
    }
});
