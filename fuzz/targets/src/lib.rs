//! Fuzz targets for auth-service, shared by the libFuzzer binaries (`fuzz_targets/`, run with
//! `cargo fuzz`) and the stable, seeded harness (`tests/smoke.rs`), so both exercise the same
//! code and the same oracles.
//!
//! - [`jwt`]: `KeySet::verify` on arbitrary token strings, on tokens assembled from a readable
//!   header/payload/signature description, and on structured mutations of validly signed tokens.
//! - [`parsers`]: the request-body parsers (`parse_json` into the flows' input types,
//!   `parse_form`), `cookie_from_header`, `peer_ip` with arbitrary `X-Forwarded-For` values,
//!   and the field validators.
//! - [`router`]: `router::find` on arbitrary methods and paths.
//! - [`webauthn`]: the passkey finish routes' credential parsers, and webauthn-rs's checks on
//!   what they let through.
//! - [`harness`]: corpus replay and a small deterministic mutator for the stable harness.
//!
//! Every target panics when an oracle is violated; a panic is a finding.

pub mod harness;
pub mod jwt;
pub mod parsers;
pub mod router;
pub mod webauthn;
