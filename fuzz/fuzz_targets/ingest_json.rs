//! The ingestion API's bodies: the first byte picks one of the six calls (registration,
//! raise, location, cancel, acknowledgement, resolution), the rest is the body, read and
//! refused exactly as the call reads it. A panic is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let status = opora_web::ingest::fuzz_body(data);
    assert!(
        !status.is_server_error(),
        "a body alone made the call answer {status}"
    );
});
