//! The stable fuzz harness: every committed corpus file, then a bounded number of seeded random
//! mutations, through the same target functions the libFuzzer binaries call.
//!
//! `FUZZ_ITERATIONS=N` or `FUZZ_SECONDS=S` (per target) and `FUZZ_SEED=N` change the budget and
//! the seed; `scripts/fuzz.sh smoke` runs it with the defaults below.

use auth_service_fuzz::harness::{self, Budget};
use auth_service_fuzz::jwt::{self, Outcome};
use auth_service_fuzz::{parsers, router, webauthn};

fn run_target(target: &str, f: fn(&[u8]), default_iterations: u64) {
    let (budget, seed) = harness::settings(default_iterations);
    let report = harness::run(target, f, budget, seed);
    let rate = report.generated as f64 / report.elapsed.as_secs_f64().max(1e-9);
    println!(
        "fuzz {target}: {} corpus files + {} generated inputs in {:.2}s ({rate:.0}/s, seed {seed:#x}, budget {budget:?}): no finding",
        report.corpus_files,
        report.generated,
        report.elapsed.as_secs_f64()
    );
}

fn jwt_target(data: &[u8]) {
    jwt::run(data);
}

#[test]
fn fuzz_jwt_verify() {
    run_target("jwt_verify", jwt_target, 150_000);
}

#[test]
fn fuzz_parsers() {
    run_target("parsers", parsers::run, 150_000);
}

#[test]
fn fuzz_router() {
    run_target("router", router::run, 100_000);
}

#[test]
fn fuzz_webauthn() {
    run_target("webauthn", webauthn::run, 100_000);
}

/// The jwt oracles are only worth something if valid tokens do get through: well-formed seeds
/// must verify, and the classic forgeries must not.
#[test]
fn jwt_oracle_is_not_vacuous() {
    let valid_rs = b"A{\"alg\":\"RS256\",\"kid\":\"$RS_KID\",\"typ\":\"at+jwt\"}\n{\"iss\":\"$ISS\",\"aud\":\"$AUD\",\"sub\":\"$SUB\",\"exp\":$EXP,\"nbf\":$NOW,\"iat\":$NOW}\nRS";
    let valid_es = b"A{\"alg\":\"ES256\",\"kid\":\"$ES_KID\",\"typ\":\"at+jwt\"}\n{\"iss\":\"$ISS\",\"aud\":\"$AUD\",\"sub\":\"$SUB\",\"exp\":$EXP,\"nbf\":$NOW,\"iat\":$NOW}\nES";
    assert_eq!(jwt::run(valid_rs), Outcome::Accepted);
    assert_eq!(jwt::run(valid_es), Outcome::Accepted);
    // The untouched signed tokens (mutation mode with no edits) verify.
    assert_eq!(jwt::run(b"M\x00"), Outcome::Accepted);
    assert_eq!(jwt::run(b"M\x01"), Outcome::Accepted);
    let forgeries: &[&[u8]] = &[
        b"A{\"alg\":\"none\",\"kid\":\"$RS_KID\",\"typ\":\"at+jwt\"}\n{\"iss\":\"$ISS\",\"aud\":\"$AUD\",\"sub\":\"$SUB\",\"exp\":$EXP,\"nbf\":$NOW}\nNONE",
        b"A{\"alg\":\"HS256\",\"kid\":\"$RS_KID\",\"typ\":\"at+jwt\"}\n{\"iss\":\"$ISS\",\"aud\":\"$AUD\",\"sub\":\"$SUB\",\"exp\":$EXP,\"nbf\":$NOW}\nHS:N",
        b"A{\"alg\":\"RS256\",\"kid\":\"$RS_KID\",\"typ\":\"at+jwt\"}\n{\"iss\":\"$ISS\",\"aud\":\"$AUD\",\"sub\":\"$SUB\",\"exp\":$PAST,\"nbf\":$PAST}\nRS",
        b"A{\"alg\":\"RS256\",\"kid\":\"$RS_KID\",\"typ\":\"JWT\"}\n{\"iss\":\"$ISS\",\"aud\":\"$AUD\",\"sub\":\"$SUB\",\"exp\":$EXP,\"nbf\":$NOW}\nRS",
        b"A{\"alg\":\"ES256\",\"kid\":\"$RS_KID\",\"typ\":\"at+jwt\"}\n{\"iss\":\"$ISS\",\"aud\":\"$AUD\",\"sub\":\"$SUB\",\"exp\":$EXP,\"nbf\":$NOW}\nES",
    ];
    for forged in forgeries {
        assert_eq!(jwt::run(forged), Outcome::Rejected, "{}", forged.escape_ascii());
    }
    let (rs, es) = jwt::public_key_ids();
    assert_ne!(rs, es);
}

#[test]
fn mutator_is_deterministic() {
    let pool = vec![b"seed one".to_vec(), b"another seed".to_vec()];
    let dict = vec![b"TOKEN".to_vec()];
    let sample = |seed| {
        let mut rng = harness::Rng::new(seed);
        (0..64).map(|i| harness::mutate(&mut rng, &pool[i % 2], &pool, &dict, 64)).collect::<Vec<_>>()
    };
    assert_eq!(sample(7), sample(7));
    assert_ne!(sample(7), sample(8));
    assert!(matches!(harness::settings(5).0, Budget::Iterations(_) | Budget::Time(_)));
}

#[test]
fn dictionaries_parse() {
    for target in ["jwt_verify", "parsers", "router", "webauthn"] {
        assert!(!harness::dictionary(target).is_empty(), "{target}.dict is empty or unreadable");
    }
    let jwt = harness::dictionary("jwt_verify");
    assert!(jwt.contains(&b"\nRS".to_vec()), "\\x0A escapes decode");
    assert!(jwt.contains(&b"\"alg\":".to_vec()), "\\\" escapes decode");
}
