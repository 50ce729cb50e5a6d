//! Record decoding (what a store hands back): never panics, and what decodes re-encodes to
//! something that decodes to the same record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tessera_core::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let again = Record::decode(&record.encode()).expect("re-encoded record decodes");
        assert_eq!(again, record);
    }
});
