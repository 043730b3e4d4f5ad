//! Forged and misused tokens: each must be refused by a protected route (401) and reported
//! inactive by introspection.

use std::path::Path;

use auth_actors::keys::{KeyAlg, KeySet, METADATA_FILE, generate_key, read_metadata, write_metadata};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::{Value, json};

use crate::helpers::{TestApp, shared_keys, spawn_app, temp_dir};

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn good_claims(sub: &str) -> Value {
    let now = now();
    json!({
        "iss": "http://auth.test", "aud": "test-audience", "sub": sub, "exp": now + 600, "iat": now, "nbf": now,
        "jti": uuid::Uuid::now_v7().to_string(), "type": "access", "username": "u", "email": "u@example.com",
        "roles": ["admin"],
    })
}

fn encode(header: &Value, claims: &Value) -> String {
    format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()))
}

async fn active_kid() -> (String, std::path::PathBuf) {
    let dir = shared_keys().await;
    let kid = read_metadata(&dir).expect("meta").keys[0].kid.clone();
    (kid, dir)
}

async fn assert_rejected(app: &TestApp, admin: &str, token: &str, what: &str) {
    let resp = app.get_with("/api/v1/sessions", token).await;
    assert_eq!(resp.status(), 401, "{what}: protected route");
    assert_eq!(app.introspect(admin, token).await, json!({"active": false}), "{what}: introspection");
}

async fn signed(app: &TestApp, claims: Value) -> String {
    app.app.services.keys.sign("at+jwt", claims).await.expect("sign")
}

#[tokio::test]
async fn forged_and_misused_tokens_are_refused_everywhere() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let (user, session) = app.user_session().await;
    let (kid, dir) = active_kid().await;
    let sub = user.id.as_str();

    // alg:none
    let none = format!("{}.", encode(&json!({"alg": "none", "typ": "at+jwt", "kid": kid}), &good_claims(sub)));
    assert_rejected(&app, &admin.access, &none, "alg none").await;

    // HS256 with the RSA public key (PEM) as the HMAC secret.
    let pem = std::fs::read_to_string(dir.join(format!("{kid}.pem"))).expect("pem");
    let public_pem = rsa::PrivateKey::from_pkcs8_pem(&pem)
        .expect("rsa")
        .to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .expect("spki");
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    header.typ = Some("at+jwt".into());
    let hs = jsonwebtoken::encode(
        &header,
        &good_claims(sub),
        &jsonwebtoken::EncodingKey::from_secret(public_pem.as_bytes()).expect("hmac key"),
    )
    .expect("hs256");
    assert_rejected(&app, &admin.access, &hs, "HS256 key confusion").await;

    // A kid we never published, signed by a key of our own making.
    let stranger_dir = temp_dir("stranger");
    generate_key(&stranger_dir, KeyAlg::RS256, 2048).expect("key");
    let stranger = KeySet::load(&stranger_dir, None).expect("load").sign("at+jwt", &good_claims(sub)).expect("sign");
    assert_rejected(&app, &admin.access, &stranger, "unknown kid").await;

    // The kid of our RSA key with alg ES256 and a valid ES256 signature by another key.
    let ec_dir = temp_dir("ec");
    let ec = generate_key(&ec_dir, KeyAlg::ES256, 2048).expect("key");
    rename_kid(&ec_dir, &ec.kid, &kid);
    let confused = KeySet::load(&ec_dir, None).expect("load").sign("at+jwt", &good_claims(sub)).expect("sign");
    assert_eq!(jsonwebtoken::decode_header(&confused).expect("header").kid.as_deref(), Some(kid.as_str()));
    assert_rejected(&app, &admin.access, &confused, "RSA kid with ES256").await;

    // Tampered payload, original signature.
    let parts: Vec<&str> = session.access.split('.').collect();
    let mut claims: Value = serde_json::from_slice(&B64.decode(parts[1]).expect("b64")).expect("json");
    claims["roles"] = json!(["admin"]);
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(claims.to_string()), parts[2]);
    assert_rejected(&app, &admin.access, &tampered, "tampered payload").await;

    // One flipped bit in the signature.
    let mut sig = B64.decode(parts[2]).expect("sig");
    sig[10] ^= 0x01;
    let flipped = format!("{}.{}.{}", parts[0], parts[1], B64.encode(sig));
    assert_rejected(&app, &admin.access, &flipped, "flipped signature").await;

    let mut expired = good_claims(sub);
    expired["exp"] = json!(now() - 300);
    assert_rejected(&app, &admin.access, &signed(&app, expired).await, "expired").await;

    let mut early = good_claims(sub);
    early["nbf"] = json!(now() + 300);
    assert_rejected(&app, &admin.access, &signed(&app, early).await, "nbf in the future").await;

    let mut wrong_iss = good_claims(sub);
    wrong_iss["iss"] = json!("http://evil.test");
    assert_rejected(&app, &admin.access, &signed(&app, wrong_iss).await, "wrong iss").await;

    let mut wrong_aud = good_claims(sub);
    wrong_aud["aud"] = json!("another-service");
    assert_rejected(&app, &admin.access, &signed(&app, wrong_aud).await, "wrong aud").await;

    let mut refresh_type = good_claims(sub);
    refresh_type["type"] = json!("refresh");
    assert_rejected(&app, &admin.access, &signed(&app, refresh_type).await, "type refresh").await;

    assert_rejected(&app, &admin.access, &session.refresh, "refresh token as access token").await;

    // A revoked jti: logout blacklists the presented access token.
    let victim = app.login(&user).await;
    let resp = app.post_with("/api/v1/auth/logout", &victim.access).await;
    assert_eq!(resp.status(), 200);
    assert_rejected(&app, &admin.access, &victim.access, "revoked jti").await;

    // And the genuine token still works, so the rejections above are about the forgeries.
    assert_eq!(app.get_with("/api/v1/sessions", &session.access).await.status(), 200);
}

fn rename_kid(dir: &Path, from: &str, to: &str) {
    std::fs::rename(dir.join(format!("{from}.pem")), dir.join(format!("{to}.pem"))).expect("rename");
    let mut meta = read_metadata(dir).expect("meta");
    meta.keys[0].kid = to.to_string();
    write_metadata(dir, &meta).expect("write");
    assert!(dir.join(METADATA_FILE).exists());
}
