//! The request pipeline: configuration in, one tower service out.
//!
//! Layers are listed outermost first, one per line, each with the reason it sits where
//! it does. The stack is boxed once, at the end.

use std::convert::Infallible;

use axum::body::Body;
use http::{Request, Response};
use tower::util::BoxCloneService;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;

use crate::config::GatewayConfig;
use crate::server::RequestLimitsLayer;
use crate::wsgi::WsgiService;

/// The whole pipeline as one cloneable service.
pub type GatewayService = BoxCloneService<Request<Body>, Response<Body>, Infallible>;

/// Compose the pipeline that ends in the WSGI application.
pub fn build(config: &GatewayConfig, app: WsgiService) -> GatewayService {
    ServiceBuilder::new()
        // Outermost: a bug in any layer below becomes a 500, not a dropped connection.
        .layer(CatchPanicLayer::new())
        // Refuse oversized requests before any work is done for them.
        .layer(RequestLimitsLayer::new(config.limits.clone()))
        // Innermost: the Python application.
        .service(app)
        .map_response(|response| response.map(Body::new))
        .boxed_clone()
}
