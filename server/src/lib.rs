//! wirescope's server: serves the app, answers its REST endpoints and WebSocket endpoints.
//!
//! [`app`] assembles the whole [`Router`] from an [`AppState`]: each API group's own
//! `routes()`, handed the context it needs, and the layers around them. `main.rs` only parses
//! the command line, binds, serves and shuts down. The modules are layered (bottom first, see
//! `server/layers.txt`): every import points down.

// Bottom: shared constants and types.
pub mod access;
pub mod balancer;
pub mod cause;
pub mod clock;
pub mod compress;
pub mod conditional;
pub mod error;
pub mod extract;
pub mod hops;
pub mod identity;
pub mod ids;
pub mod limits;
pub mod paths;
pub mod secrets;
pub mod shutdown;
// Infrastructure.
pub mod board;
pub mod capture;
pub mod log;
pub mod serve;
pub mod ws;
// Middleware.
pub mod faults;
pub mod idempotency;
pub mod origin;
pub mod proxy;
// Handlers, one module per API group.
pub mod assets;
pub mod changes;
pub mod echo;
pub mod events;
pub mod health;
pub mod instructor;
pub mod lab;
pub mod observe;
pub mod rehearsal;
pub mod sessions;
pub mod transcripts;
// Above the handlers.
pub mod openapi;
pub mod state;

use axum::Router;
use axum::extract::FromRef;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::ApiError;
pub use shutdown::Shutdown;
pub use state::{AppState, Config, StartError};

/// The whole HTTP surface of the server: the routes, and around them, once (not around each
/// route, where every request would clone and box every layer again), the layers — outermost
/// first: tracing, the trusted client address, compression, capture, the origin check,
/// faults and idempotency.
pub fn app(state: AppState) -> Router {
    let secrets = state.secrets().clone();
    let routes = Router::new()
        .merge(health::routes().with_state(FromRef::from_ref(&state)))
        .merge(openapi::routes())
        .merge(echo::routes().with_state(FromRef::from_ref(&state)))
        .merge(events::routes().with_state(FromRef::from_ref(&state)))
        .merge(changes::routes().with_state(FromRef::from_ref(&state)))
        .merge(lab::routes().with_state(FromRef::from_ref(&state)))
        .merge(observe::routes().with_state(FromRef::from_ref(&state)))
        .merge(sessions::routes().with_state(FromRef::from_ref(&state)))
        .merge(transcripts::routes().with_state(FromRef::from_ref(&state)))
        .merge(instructor::routes().with_state(FromRef::from_ref(&state)))
        .merge(rehearsal::routes().with_state(FromRef::from_ref(&state)))
        .method_not_allowed_fallback(error::method_not_allowed)
        .fallback_service(assets::service(FromRef::from_ref(&state)));
    let layered = tower::ServiceBuilder::new()
        .layer(
            // Spans name the method and the path, scrubbed (never the query or headers), so no
            // log line holds the token.
            TraceLayer::new_for_http()
                .make_span_with(move |req: &axum::http::Request<axum::body::Body>| {
                    tracing::debug_span!("request", method = %req.method(), path = %secrets.scrub(req.uri().path()))
                })
                .on_response(DefaultOnResponse::new().level(Level::DEBUG)),
        )
        .layer(axum::middleware::from_fn_with_state(state.client_address_header(), proxy::middleware))
        .layer(compress::Compress)
        .layer(state.capture())
        .layer(axum::middleware::from_fn_with_state(state.origins().clone(), origin::middleware))
        .layer(axum::middleware::from_fn_with_state(state.faults().clone(), faults::middleware))
        .layer(axum::middleware::from_fn_with_state(state.idempotency().clone(), idempotency::middleware))
        .service(routes);
    Router::new().fallback_service(layered)
}
