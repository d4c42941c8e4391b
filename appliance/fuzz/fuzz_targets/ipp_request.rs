//! The IPP request decoder as the server runs it on untrusted bytes: the
//! attribute guard, the `ipp` crate's parser, the request checks and the
//! job template check. Nothing here may panic, whatever the bytes.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|message: &[u8]| {
    // The server refuses attribute sections beyond 64 KiB before parsing.
    if message.len() <= 64 * 1024 {
        let _ = appliance::ipp::request::decode(message);
    }
});
