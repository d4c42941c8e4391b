//! The release API's JSON request bodies (login and release), parsed as
//! the handlers parse them. The first byte picks the body; nothing here may
//! panic, whatever the bytes.

#![no_main]

use appliance::api::{RequestBody, parse_body};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((pick, body)) = data.split_first() else {
        return;
    };
    // The API refuses bodies beyond 64 KiB before parsing.
    if body.len() <= 64 * 1024 {
        let kind = if pick % 2 == 0 {
            RequestBody::Login
        } else {
            RequestBody::Release
        };
        let _ = parse_body(kind, body);
    }
});
