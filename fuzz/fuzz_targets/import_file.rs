//! The register's import: the bytes as an uploaded CSV (first byte even) or XLSX file (odd),
//! read and checked row by row. A panic is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    opora_web::pages::import::fuzz_file(data);
});
