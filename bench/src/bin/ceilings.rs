//! The CPU ceilings, with every core busy for a fixed time:
//! - argon2: Argon2id hashes per second at the given parameters;
//! - signing: RS256 signatures per second with a key parsed once (the service's own signer);
//! - the bundled password list: nanoseconds per check (single thread) of a listed and an
//!   unlisted password, to set beside one argon2 hash.
//!
//! Usage: ceilings KEYS_DIR SECONDS MEMORY_KIB ITERATIONS PARALLELISM
//! Prints one JSON object.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::PasswordHasher as _;
use auth_actors::keys::KeySet;

fn run_on_all_cores(seconds: f64, work: impl Fn() + Send + Sync + 'static) -> f64 {
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let work = Arc::new(work);
    let started = Instant::now();
    let threads: Vec<_> = (0..cores)
        .map(|_| {
            let (stop, count, work) = (stop.clone(), count.clone(), work.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    work();
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(seconds));
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

/// Nanoseconds per bundled-list check of each of `passwords`, averaged over many rounds.
fn blocklist_ns(passwords: &[&str]) -> f64 {
    let rounds = 200_000;
    let started = Instant::now();
    for _ in 0..rounds {
        for p in passwords {
            std::hint::black_box(auth_service::passwords::blocklist::is_listed(std::hint::black_box(p)));
        }
    }
    started.elapsed().as_secs_f64() * 1e9 / (rounds * passwords.len()) as f64
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let keys_dir = args.get(1).cloned().unwrap_or_else(|| ".dev/keys".into());
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let m: u32 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(19456);
    let t: u32 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(2);
    let p: u32 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(1);

    let params = argon2::Params::new(m, t, p, None).expect("argon2 parameters");
    let single = {
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params.clone());
        let started = Instant::now();
        for _ in 0..5 {
            let _ = a.hash_password(b"benchmark password");
        }
        started.elapsed().as_secs_f64() / 5.0
    };
    let argon2_per_sec = run_on_all_cores(seconds, move || {
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params.clone());
        let _ = a.hash_password(b"benchmark password");
    });

    let listed = ["password", "Password1", "iloveyou", "qwerty123", "trustno1", "superman"];
    let unlisted = ["correct horse battery", "violet tractor umbrella 42", "x7#Kq!9vLz@2", "bench password 1"];
    assert!(listed.iter().all(|p| auth_service::passwords::blocklist::is_listed(p)), "a listed sample is missing");
    assert!(!unlisted.iter().any(|p| auth_service::passwords::blocklist::is_listed(p)), "an unlisted sample is listed");
    let check_listed_ns = blocklist_ns(&listed);
    let check_unlisted_ns = blocklist_ns(&unlisted);

    let keys = Arc::new(KeySet::load(std::path::Path::new(&keys_dir), None).expect("load keys"));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({"iss": "bench", "sub": "00000000-0000-0000-0000-000000000000", "aud": "bench",
        "exp": now + 900, "iat": now, "nbf": now, "jti": "x", "type": "access", "username": "u", "email": "u@e.x", "roles": ["user"]});
    let single_sign = {
        let started = Instant::now();
        for _ in 0..50 {
            let _ = keys.sign("at+jwt", &claims);
        }
        started.elapsed().as_secs_f64() / 50.0
    };
    let k = keys.clone();
    let c = claims.clone();
    let sign_per_sec = run_on_all_cores(seconds, move || {
        let _ = k.sign("at+jwt", &c);
    });
    println!(
        "{}",
        serde_json::json!({
            "cores": std::thread::available_parallelism().map_or(2, |n| n.get()),
            "argon2_hash_ms": single * 1e3,
            "argon2_per_sec": argon2_per_sec,
            "sign_alg": keys.active_alg().as_str(),
            "sign_ms": single_sign * 1e3,
            "sign_per_sec": sign_per_sec,
            "password_check_listed_ns": check_listed_ns,
            "password_check_unlisted_ns": check_unlisted_ns,
        })
    );
}
