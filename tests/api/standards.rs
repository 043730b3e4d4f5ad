//! The documents and endpoints of the standards: discovery, introspection and revocation.

use serde_json::Value;

use crate::helpers::spawn_app;

#[tokio::test]
async fn both_discovery_documents_publish_the_issuer_jwks_uri_and_endpoints() {
    let app = spawn_app().await;
    for path in ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"] {
        let resp = app.get(path).await;
        assert_eq!(resp.status(), 200, "{path}");
        let doc: Value = resp.json().await.expect("json");
        assert_eq!(doc["issuer"], "http://auth.test");
        assert_eq!(doc["jwks_uri"], "http://auth.test/.well-known/jwks.json");
        assert_eq!(doc["introspection_endpoint"], "http://auth.test/oauth2/introspect");
        assert_eq!(doc["revocation_endpoint"], "http://auth.test/oauth2/revoke");
        assert_eq!(doc["token_endpoint"], "http://auth.test/oauth2/token");
        assert_eq!(doc["authorization_endpoint"], "http://auth.test/oauth2/authorize");
        assert_eq!(doc["userinfo_endpoint"], "http://auth.test/oauth2/userinfo");
        assert_eq!(doc["end_session_endpoint"], "http://auth.test/oauth2/logout");
        assert_eq!(doc["response_types_supported"], serde_json::json!(["code"]));
        assert_eq!(doc["code_challenge_methods_supported"], serde_json::json!(["S256"]), "no plain");
        assert_eq!(doc["subject_types_supported"], serde_json::json!(["public"]));
        assert_eq!(doc["authorization_response_iss_parameter_supported"], true);
        assert_eq!(doc["id_token_signing_alg_values_supported"], doc["access_token_signing_alg_values_supported"]);
        for claim in ["sub", "auth_time", "nonce", "at_hash", "email_verified", "preferred_username", "roles"] {
            assert!(doc["claims_supported"].as_array().expect("claims").iter().any(|c| c == claim), "{claim}");
        }
        for scope in ["openid", "profile", "email", "offline_access"] {
            assert!(doc["scopes_supported"].as_array().expect("scopes").iter().any(|s| s == scope), "{scope}");
        }
        // Every endpoint it names is served here.
        for (name, url) in doc.as_object().expect("object").iter().filter(|(k, _)| k.ends_with("_endpoint")) {
            let path = url.as_str().expect("url").trim_start_matches("http://auth.test");
            let resp = app.client.get(app.url(path)).send().await.expect("send");
            assert_ne!(resp.status(), 404, "{name} {path}");
        }
    }
}

#[tokio::test]
async fn introspection_reports_a_live_token_as_active_with_its_claims() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let (user, session) = app.user_session().await;
    let answer = app.introspect(&admin.access, &session.access).await;
    assert_eq!(answer["active"], true);
    assert_eq!(answer["sub"], user.id.as_str());
    assert_eq!(answer["username"], user.username.as_str());
    assert_eq!(answer["token_type"], "Bearer");
    assert!(answer["exp"].is_i64());
}

#[tokio::test]
async fn introspection_needs_an_admin_or_service_caller() {
    let app = spawn_app().await;
    let (_, session) = app.user_session().await;
    let anonymous =
        app.client.post(app.url("/api/v1/auth/introspect")).form(&[("token", "x")]).send().await.expect("send");
    assert_eq!(anonymous.status(), 401);
    assert_eq!(app.introspect_response(&session.access, &session.access).await.status(), 403);
}

#[tokio::test]
async fn introspection_answers_inactive_after_logout_all() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let (_, session) = app.user_session().await;
    assert_eq!(app.post_with("/api/v1/auth/logout-all", &session.access).await.status(), 200);
    assert_eq!(app.introspect(&admin.access, &session.access).await, serde_json::json!({"active": false}));
}

#[tokio::test]
async fn revocation_answers_200_for_unknown_tokens_and_revokes_access_and_refresh_tokens() {
    let app = spawn_app().await;
    let admin = app.admin_session().await;
    let (_, session) = app.user_session().await;
    let revoke = |token: String, hint: &'static str| {
        let app = &app;
        async move {
            app.client
                .post(app.url("/api/v1/auth/revoke"))
                .form(&[("token", token.as_str()), ("token_type_hint", hint)])
                .send()
                .await
                .expect("send")
                .status()
        }
    };
    assert_eq!(revoke("no-such-token".into(), "access_token").await, 200);
    assert_eq!(revoke(session.access.clone(), "access_token").await, 200);
    assert_eq!(app.introspect(&admin.access, &session.access).await["active"], false);
    assert_eq!(app.get_with("/api/v1/sessions", &session.access).await.status(), 401);
    assert_eq!(revoke(session.refresh.clone(), "refresh_token").await, 200);
    assert_eq!(app.refresh(&session.refresh).await.status(), 401);
    let missing =
        app.client.post(app.url("/api/v1/auth/revoke")).form(&[("token_type_hint", "x")]).send().await.expect("send");
    assert_eq!(missing.status(), 400);
}
