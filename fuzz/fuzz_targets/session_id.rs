//! Session ID parsing: never panics, and accepts only what `expose` produces.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::{Key, SessionId};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Some(id) = SessionId::parse(text) {
            assert_eq!(id.expose(), text);
        }
        if let Some(key) = Key::from_handle(text) {
            assert_eq!(key.handle(), text);
        }
    }
});
