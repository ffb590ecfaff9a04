//! Response compression: gzip, br and zstd, chosen from `Accept-Encoding` with q-values.
//!
//! What the inner service produces in quick succession is compressed as one stream,
//! however small its frames; the encoder is flushed only when the inner body has to wait
//! (it returns `Pending`) or ends, so a streamed response still reaches the client chunk
//! by chunk, and tiny chunks do not inflate the output. Skipped: bodies that are already
//! encoded, ranges, `text/event-stream`, already-compressed media types,
//! `Cache-Control: no-transform`, 204/304, and bodies known to be under `min_size`.
//! `Vary: Accept-Encoding` is added to every response that could have been compressed.
//! A HEAD response gets the head its GET would get (`Content-Encoding`, no
//! `Content-Length`) and no body (RFC 9110 section 9.3.2).
//!
//! # Layout (the shape of tower-http's `compression`)
//! - this file: [`CompressionLayer`] (the configuration), [`Encoding`], [`Levels`];
//! - `service`: [`Compression`] and its [`ResponseFuture`], which rewrite the head;
//! - `negotiate`: which coding, if any, for a request and a response;
//! - `body`: the streaming encoders and the compressed body.
//!
//! ```
//! use gateway_middleware::compression::{CompressionLayer, Encoding};
//! let layer = CompressionLayer::new()
//!     .encodings(vec![Encoding::Brotli, Encoding::Zstd, Encoding::Gzip])
//!     .min_size(256);
//! # let _ = layer;
//! ```

mod body;
mod negotiate;
mod service;

use tower::Layer;

pub use negotiate::{compressible_media_type, negotiate};
pub use service::{Compression, ResponseFuture};

/// A content coding the layer can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    /// `gzip` (flate2).
    Gzip,
    /// `br` (brotli).
    Brotli,
    /// `zstd`.
    Zstd,
}

impl Encoding {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Encoding::Gzip => "gzip",
            Encoding::Brotli => "br",
            Encoding::Zstd => "zstd",
        }
    }

    /// Parse a config name: `gzip`, `br` (or `brotli`), `zstd`.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "gzip" => Some(Encoding::Gzip),
            "br" | "brotli" => Some(Encoding::Brotli),
            "zstd" => Some(Encoding::Zstd),
            _ => None,
        }
    }
}

/// Compression levels per coding.
#[derive(Clone, Copy, Debug)]
pub struct Levels {
    /// gzip 1-9.
    pub gzip: u32,
    /// brotli quality 0-11.
    pub brotli: u32,
    /// zstd 1-22.
    pub zstd: i32,
}

impl Default for Levels {
    fn default() -> Self {
        Self {
            gzip: 6,
            brotli: 4,
            zstd: 3,
        }
    }
}

/// Put in each request's extensions when the client accepts one of the layer's codings:
/// the one the layer would use, and from what size. A layer below that holds encoded
/// variants (the static files layer) may answer with one of them; a response that has
/// `Content-Encoding` passes through this layer unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompressionOffer {
    /// The coding negotiated for the request.
    pub encoding: Encoding,
    /// Bodies smaller than this are not compressed.
    pub min_size: u64,
}

/// Compresses responses for clients that accept it.
#[derive(Clone, Debug)]
pub struct CompressionLayer {
    encodings: Vec<Encoding>,
    min_size: u64,
    levels: Levels,
}

impl Default for CompressionLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl CompressionLayer {
    /// br, zstd and gzip (preferred in that order at equal q), bodies of 256 bytes or more.
    pub fn new() -> Self {
        Self {
            encodings: vec![Encoding::Brotli, Encoding::Zstd, Encoding::Gzip],
            min_size: 256,
            levels: Levels::default(),
        }
    }

    /// The codings offered, most preferred first.
    pub fn encodings(mut self, encodings: Vec<Encoding>) -> Self {
        self.encodings = encodings;
        self
    }

    /// Bodies known to be smaller are sent as they are.
    pub fn min_size(mut self, min_size: u64) -> Self {
        self.min_size = min_size;
        self
    }

    /// Compression levels.
    pub fn levels(mut self, levels: Levels) -> Self {
        self.levels = levels;
        self
    }
}

impl<S> Layer<S> for CompressionLayer {
    type Service = Compression<S>;

    fn layer(&self, inner: S) -> Compression<S> {
        Compression {
            inner,
            config: self.clone(),
        }
    }
}
