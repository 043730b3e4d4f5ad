//! The matcher of a route table: a table is a slice of entries, each with a method and a path
//! template with `{name}` placeholders (as in the OpenAPI document); [`Router::find`] answers the
//! entry for a request, with the values of its placeholders, or 404/405. The table itself, with
//! each route's access, rate-limit class and handler, is `crate::routes::table`: this layer
//! knows nothing of what routes do.

use std::collections::HashMap;

use hyper::Method;

use super::error::ApiError;

/// An entry of a route table.
pub trait Route: Sync + 'static {
    fn method(&self) -> &Method;
    /// Path with `{name}` placeholders.
    fn template(&self) -> &'static str;
}

/// A route table and an index of its routes without placeholders, by method and path: the
/// common case is one hash lookup.
pub struct Router<T: 'static> {
    routes: &'static [T],
    fixed: HashMap<(Method, &'static str), &'static T>,
}

impl<T: Route> Router<T> {
    pub fn new(routes: &'static [T]) -> Router<T> {
        let fixed = routes
            .iter()
            .filter(|r| !r.template().contains('{'))
            .map(|r| ((r.method().clone(), r.template()), r))
            .collect();
        Router { routes, fixed }
    }

    /// Finds the route for `method` and `path`, with the values of its placeholders.
    /// A path that exists under another method is 405; anything else is 404.
    pub fn find(&self, method: &Method, path: &str) -> Result<(&'static T, Vec<String>), ApiError> {
        let method = if method == Method::HEAD { &Method::GET } else { method };
        if let Some(route) = self.fixed.get(&(method.clone(), path)) {
            return Ok((route, Vec::new()));
        }
        let mut allowed: Vec<&'static str> = Vec::new();
        for route in self.routes {
            if let Some(params) = match_template(route.template(), path) {
                if route.method() == method {
                    return Ok((route, params));
                }
                allowed.push(route.method().as_str());
                if route.method() == Method::GET {
                    allowed.push("HEAD");
                }
            }
        }
        if allowed.is_empty() {
            Err(ApiError::NotFound("no such route".into()))
        } else {
            Err(ApiError::MethodNotAllowed(allowed.join(", ")))
        }
    }
}

fn match_template(template: &str, path: &str) -> Option<Vec<String>> {
    let mut params = Vec::new();
    let mut t = template.split('/');
    let mut p = path.split('/');
    loop {
        match (t.next(), p.next()) {
            (None, None) => return Some(params),
            (Some(ts), Some(ps)) if ts.starts_with('{') && ts.ends_with('}') => {
                if ps.is_empty() {
                    return None;
                }
                params.push(ps.to_string());
            }
            (Some(ts), Some(ps)) if ts == ps => {}
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_match_whole_segments_only() {
        assert_eq!(match_template("/a/{id}/b", "/a/42/b"), Some(vec!["42".to_string()]));
        assert_eq!(match_template("/a/{id}/b", "/a//b"), None);
        assert_eq!(match_template("/a/{id}", "/a/1/extra"), None);
        assert_eq!(match_template("/api/v1/healthz", "/api/v1/healthz/"), None);
    }

    struct Entry(Method, &'static str);

    impl Route for Entry {
        fn method(&self) -> &Method {
            &self.0
        }
        fn template(&self) -> &'static str {
            self.1
        }
    }

    static TABLE: &[Entry] = &[Entry(Method::GET, "/api/v1/healthz"), Entry(Method::PUT, "/api/v1/roles/{id}")];

    #[test]
    fn a_known_path_under_the_wrong_method_is_405() {
        let router = Router::new(TABLE);
        assert!(
            matches!(router.find(&Method::DELETE, "/api/v1/healthz"), Err(ApiError::MethodNotAllowed(a)) if a == "GET, HEAD")
        );
        assert!(
            matches!(router.find(&Method::GET, "/api/v1/roles/7"), Err(ApiError::MethodNotAllowed(a)) if a == "PUT")
        );
        assert!(matches!(router.find(&Method::PUT, "/api/v1/roles/7"), Ok((_, p)) if p == ["7"]));
        assert!(matches!(router.find(&Method::GET, "/nope"), Err(ApiError::NotFound(_))));
    }
}
