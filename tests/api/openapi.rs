//! The OpenAPI document stays true to the router: the same (method, path) pairs, both ways.

use std::collections::BTreeSet;

use auth_service::routes::table::{ROUTES, is_internal};

use crate::helpers::spawn_app;

#[tokio::test]
async fn the_openapi_document_lists_exactly_the_routes_of_the_router() {
    let app = spawn_app().await;
    let resp = app.get("/openapi.json").await;
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = resp.json().await.expect("json");
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.1")));

    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .filter(|r| !is_internal(r.template))
        .map(|r| (r.method.as_str().to_string(), r.template.to_string()))
        .collect();
    let missing: Vec<_> = routed.difference(&documented).collect();
    let extra: Vec<_> = documented.difference(&routed).collect();
    assert!(missing.is_empty(), "routes missing from the document: {missing:?}");
    assert!(extra.is_empty(), "documented paths the router does not serve: {extra:?}");
}

#[tokio::test]
async fn the_error_schema_is_documented() {
    let doc: serde_json::Value = serde_json::from_str(auth_service::routes::OPENAPI).expect("valid json");
    let error = &doc["components"]["schemas"]["Error"];
    assert_eq!(error["required"], serde_json::json!(["error", "detail"]));
}
