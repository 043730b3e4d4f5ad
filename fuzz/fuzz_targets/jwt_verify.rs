#![no_main]
//! libFuzzer entry point; the target itself is `auth_service_fuzz::jwt::run`, shared with the
//! stable harness in tests/smoke.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = auth_service_fuzz::jwt::run(data);
});
