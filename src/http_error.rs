//! The gateway's own error responses: one builder, shared with the native layers.

pub use gateway_middleware::error_response;
