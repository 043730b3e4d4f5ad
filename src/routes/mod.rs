//! Route handlers: one async function per route, each a thin expression that parses the
//! request, calls a flow or an actor handle, and renders the reply.

mod ops;
mod well_known;

use crate::app::App;
use crate::http::router::RouteId;
use crate::http::{ApiError, Request, Response};

/// Calls the handler of `route`.
pub async fn dispatch(app: &App, route: RouteId, req: Request) -> Result<Response, ApiError> {
    match route {
        RouteId::Healthz => ops::healthz(),
        RouteId::Readyz => ops::readyz(app).await,
        RouteId::Metrics => ops::metrics(app),
        RouteId::Jwks => well_known::jwks(app, &req),
        #[cfg(feature = "test-hooks")]
        RouteId::TestFail => ops::test_fail(app, &req),
    }
}
