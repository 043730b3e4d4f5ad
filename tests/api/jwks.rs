use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};

use crate::helpers::spawn_app;

#[tokio::test]
async fn jwks_lists_the_published_key_with_kid_alg_and_use() {
    let app = spawn_app().await;
    let resp = app.get("/.well-known/jwks.json").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.headers()["cache-control"], "public, max-age=300");
    let body: serde_json::Value = resp.json().await.expect("json");
    let keys = body["keys"].as_array().expect("keys array");
    assert_eq!(keys.len(), 1);
    let k = &keys[0];
    assert_eq!(k["kty"], "RSA");
    assert_eq!(k["alg"], "RS256");
    assert_eq!(k["use"], "sig");
    assert!(k["kid"].as_str().is_some_and(|s| !s.is_empty()));
    assert!(k["n"].is_string() && k["e"].is_string());
    assert!(k.get("d").is_none(), "private parts must never be published");
}

#[tokio::test]
async fn jwks_answers_304_when_if_none_match_names_its_etag() {
    let app = spawn_app().await;
    let first = app.get("/.well-known/jwks.json").await;
    let etag = first.headers()["etag"].to_str().expect("etag").to_string();
    assert!(etag.starts_with('"') && etag.ends_with('"'), "strong etag: {etag}");

    let again =
        app.client.get(app.url("/.well-known/jwks.json")).header("if-none-match", &etag).send().await.expect("send");
    assert_eq!(again.status(), 304);
    assert_eq!(again.headers()["etag"], etag.as_str());
    assert!(again.bytes().await.expect("body").is_empty());

    let other = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .header("if-none-match", "\"other\"")
        .send()
        .await
        .expect("send");
    assert_eq!(other.status(), 200);
}

#[tokio::test]
async fn a_token_signed_by_the_key_manager_verifies_against_the_served_jwks() {
    let app = spawn_app().await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let claims = serde_json::json!({
        "iss": "http://auth.test", "aud": "test-audience", "sub": "someone",
        "iat": now, "nbf": now, "exp": now + 60,
    });
    let token = app.app.services.keys.sign("at+jwt", claims).await.expect("sign");

    // Independent verification: only the JWKS served over HTTP and the jsonwebtoken crate.
    let jwks: JwkSet = app.get("/.well-known/jwks.json").await.json().await.expect("jwks");
    let header = jsonwebtoken::decode_header(&token).expect("header");
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let jwk = jwks.find(header.kid.as_deref().expect("kid")).expect("kid in jwks");
    let key = DecodingKey::from_jwk(jwk).expect("decoding key");
    let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&["test-audience"]);
    validation.set_issuer(&["http://auth.test"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(&token, &key, &validation).expect("verifies");
    assert_eq!(data.claims["sub"], "someone");
}
