#![no_main]
//! libFuzzer entry point; the target itself is `auth_service_fuzz::webauthn::run`, shared with the
//! stable harness in tests/smoke.rs.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    auth_service_fuzz::webauthn::run(data);
});
