//! Leaf types every part of the gateway shares: the boxed HTTP service, the facts about
//! a request's connection, and the one error response. Nothing here imports another
//! module of the crate.
//!
//! (Named `types`, not `http`: a module called `http` would shadow the `http` crate.)

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use http::{Request, Response};
use tower::util::BoxCloneService;

pub mod http_syntax;
pub mod open_count;

pub use gateway_middleware::error_response;
pub use gateway_middleware::{AuthenticatedUser, ConnectionInfo, TraceIds};

/// The request stack (or any part of it) as one cloneable service.
pub type GatewayService = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

/// A layer built from configuration, ready to wrap the service below it.
pub type NativeLayer = Arc<dyn Fn(GatewayService) -> GatewayService + Send + Sync>;

/// The decoded path prefix a route mounted its action at (`/tools` for
/// `path = "/tools"`), in the request's extensions: an app's `SCRIPT_NAME`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountPrefix(pub bytes::Bytes);

/// What a TLS connection tells the application, put in each request's extensions.
#[derive(Clone, Debug, Default)]
pub struct TlsSession {
    /// The verified client certificate's subject (`CN=alice,O=Example`), with mTLS.
    pub client_subject: Option<String>,
}
