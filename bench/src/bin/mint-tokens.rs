//! Signs one access token per user id read from standard input (one per line), with the key
//! directory's active key and the service's own claims type, and prints them one per line. For
//! the scenario that needs thousands of distinct users' tokens, which logging in (one argon2
//! hash each) would take minutes to make.
//!
//! Usage: mint-tokens KEYS_DIR ISSUER AUDIENCE TTL_SECONDS < user-ids

use std::io::{BufRead, Write};

use auth_actors::keys::KeySet;
use auth_service::flows::tokens::{AccessClaims, TokenKind};
use uuid::Uuid;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, dir, issuer, audience, ttl] = args.as_slice() else {
        eprintln!("usage: mint-tokens KEYS_DIR ISSUER AUDIENCE TTL_SECONDS < user-ids");
        std::process::exit(2);
    };
    let ttl: i64 = ttl.parse().expect("TTL_SECONDS is a number");
    let keys = KeySet::load(std::path::Path::new(dir), None).expect("load the key directory");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read a user id");
        let Ok(user) = line.trim().parse::<Uuid>() else { continue };
        let claims = AccessClaims {
            iss: issuer.clone(),
            sub: user.to_string(),
            aud: audience.clone(),
            exp: now + ttl,
            iat: now,
            nbf: now,
            jti: Uuid::now_v7(),
            kind: TokenKind::Access,
            username: Some(format!("user-{}", user.simple())),
            email: Some(format!("{}@bench.example", user.simple())),
            roles: Some(vec!["user".into()]),
            sid: Some(Uuid::now_v7()),
            client_id: None,
            scope: None,
            amr: Some(vec!["pwd".into()]),
        };
        let token = keys.sign("at+jwt", &claims).expect("sign");
        writeln!(out, "{token}").expect("write");
    }
}
