//! Files from a folder under a mount prefix, in front of the application.
//!
//! Built on tower-http's `ServeDir` (Range, Last-Modified, `index.html`, precompressed
//! `.br`/`.gz`/`.zst` siblings) with what a production file server also needs: strong
//! ETags with `If-None-Match` -> 304, `Cache-Control`, and containment: `..` (also
//! percent-encoded) gets 404 and a symlink that leads out of the folder is not
//! followed. A miss falls through to the inner service (so the application still serves
//! routes it owns under the prefix) unless `fallthrough` is off.
//!
//! ```no_run
//! use gateway_middleware::static_files::StaticFilesLayer;
//! let layer = StaticFilesLayer::new("/static", "public".as_ref())
//!     .unwrap()
//!     .cache_control("public, max-age=3600")
//!     .unwrap();
//! # let _ = layer;
//! ```

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::UNIX_EPOCH;

use futures_util::future::{BoxFuture, FutureExt};
use http::{header, HeaderValue, Method, Request, Response, StatusCode, Uri};
use tower::{Layer, Service, ServiceExt};
use tower_http::services::ServeDir;

use crate::request_path::canonical_prefix;
use crate::{error_response, Body};

/// Why the layer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StaticFilesError {
    /// The folder does not exist or is not readable.
    #[error("static dir {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The mount prefix is not `/something`.
    #[error("mount {0:?} must start with '/' and not end with '/'")]
    Mount(String),
    /// The Cache-Control value has invalid characters.
    #[error("invalid cache_control value {0:?}")]
    CacheControl(String),
}

/// Serves files from `dir` for requests under `mount`.
#[derive(Clone, Debug)]
pub struct StaticFilesLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    mount: String,
    dir: PathBuf,
    serve: ServeDir,
    cache_control: Option<HeaderValue>,
    fallthrough: bool,
}

impl StaticFilesLayer {
    /// Serve `dir` (which must exist) under `mount` (`"/static"`; `"/"` for the root).
    pub fn new(mount: &str, dir: &Path) -> Result<Self, StaticFilesError> {
        let mount = if mount == "/" { "" } else { mount };
        if !mount.is_empty() && (!mount.starts_with('/') || mount.ends_with('/')) {
            return Err(StaticFilesError::Mount(mount.to_owned()));
        }
        // Compared with canonical request paths (see `request_path`).
        let mount = if mount.is_empty() {
            String::new()
        } else {
            canonical_prefix(mount).map_err(|_| StaticFilesError::Mount(mount.to_owned()))?
        };
        let mount = mount.as_str();
        let dir = std::fs::canonicalize(dir).map_err(|source| StaticFilesError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        std::fs::read_dir(&dir).map_err(|source| StaticFilesError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        let serve = ServeDir::new(&dir)
            .precompressed_br()
            .precompressed_gzip()
            .precompressed_zstd()
            .append_index_html_on_directories(true);
        Ok(Self {
            shared: Arc::new(Shared {
                mount: mount.to_owned(),
                dir,
                serve,
                cache_control: None,
                fallthrough: true,
            }),
        })
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared).expect("configure the layer before cloning it")
    }

    /// `Cache-Control` for files served.
    pub fn cache_control(mut self, value: &str) -> Result<Self, StaticFilesError> {
        let value = HeaderValue::try_from(value)
            .map_err(|_| StaticFilesError::CacheControl(value.into()))?;
        self.shared_mut().cache_control = Some(value);
        Ok(self)
    }

    /// Whether a miss goes on to the inner service (true) or gets 404 (false).
    pub fn fallthrough(mut self, fallthrough: bool) -> Self {
        self.shared_mut().fallthrough = fallthrough;
        self
    }

    /// Whether `.br`/`.gz`/`.zst` siblings are served to clients that accept them.
    pub fn precompressed(mut self, enabled: bool) -> Self {
        if !enabled {
            let shared = self.shared_mut();
            shared.serve = ServeDir::new(&shared.dir).append_index_html_on_directories(true);
        }
        self
    }
}

impl<S> Layer<S> for StaticFilesLayer {
    type Service = StaticFiles<S>;

    fn layer(&self, inner: S) -> StaticFiles<S> {
        StaticFiles {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`StaticFilesLayer`].
#[derive(Clone, Debug)]
pub struct StaticFiles<S> {
    inner: S,
    shared: Arc<Shared>,
}

/// What a request under the mount resolves to.
enum Lookup {
    /// A file (or a folder with an index) inside `dir`.
    Found {
        path: PathBuf,
        metadata: std::fs::Metadata,
    },
    /// Nothing there.
    Missing,
    /// `..` or a symlink out of `dir`.
    Forbidden,
}

impl Shared {
    /// The path below the mount, or None if the request is not under it.
    fn relative<'a>(&self, path: &'a str) -> Option<&'a str> {
        let rest = path.strip_prefix(self.mount.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    async fn lookup(&self, relative: &str) -> Lookup {
        let decoded = percent_encoding::percent_decode_str(relative)
            .decode_utf8_lossy()
            .into_owned();
        let relative = Path::new(decoded.trim_start_matches('/'));
        if relative
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
            || decoded.contains('\\')
        {
            return Lookup::Forbidden;
        }
        let candidate = self.dir.join(relative);
        let Ok(real) = tokio::fs::canonicalize(&candidate).await else {
            return Lookup::Missing;
        };
        if !real.starts_with(&self.dir) {
            return Lookup::Forbidden;
        }
        let real = if real.is_dir() {
            real.join("index.html")
        } else {
            real
        };
        match tokio::fs::metadata(&real).await {
            Ok(metadata) if metadata.is_file() => {
                // The index file itself may be a symlink out of dir.
                match tokio::fs::canonicalize(&real).await {
                    Ok(index) if index.starts_with(&self.dir) => Lookup::Found {
                        path: real,
                        metadata,
                    },
                    _ => Lookup::Forbidden,
                }
            }
            _ => Lookup::Missing,
        }
    }
}

fn etag(metadata: &std::fs::Metadata) -> Option<HeaderValue> {
    let modified = metadata.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    HeaderValue::try_from(format!(
        "\"{:x}-{:x}\"",
        metadata.len(),
        modified.as_nanos()
    ))
    .ok()
}

fn matches_if_none_match(request: &Request<Body>, etag: &HeaderValue) -> bool {
    let bare = |t: &[u8]| t.strip_prefix(b"W/").unwrap_or(t).to_vec();
    request
        .headers()
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|candidate| candidate == "*" || bare(candidate.as_bytes()) == bare(etag.as_bytes()))
}

impl<S> Service<Request<Body>> for StaticFiles<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let shared = self.shared.clone();
        let relative = shared.relative(request.uri().path()).map(str::to_owned);
        let serveable = matches!(*request.method(), Method::GET | Method::HEAD);
        let Some(relative) = relative.filter(|_| serveable) else {
            return self.inner.call(request).boxed();
        };
        let mut inner = self.inner.clone();
        std::mem::swap(&mut inner, &mut self.inner);
        async move {
            let (path, metadata) = match shared.lookup(&relative).await {
                Lookup::Found { path, metadata } => (path, metadata),
                Lookup::Forbidden => {
                    tracing::info!(path = %relative, "static: outside the folder: 404");
                    return Ok(error_response(StatusCode::NOT_FOUND));
                }
                Lookup::Missing if shared.fallthrough => return inner.call(request).await,
                Lookup::Missing => return Ok(error_response(StatusCode::NOT_FOUND)),
            };
            let tag = etag(&metadata);
            if let Some(tag) = &tag {
                if matches_if_none_match(&request, tag) {
                    let mut response = Response::new(Body::empty());
                    *response.status_mut() = StatusCode::NOT_MODIFIED;
                    response.headers_mut().insert(header::ETAG, tag.clone());
                    if let Some(cache) = &shared.cache_control {
                        response
                            .headers_mut()
                            .insert(header::CACHE_CONTROL, cache.clone());
                    }
                    return Ok(response);
                }
            }
            // ServeDir resolves the path again from the rewritten URI; `path` is inside dir.
            let below = path.strip_prefix(&shared.dir).unwrap_or(&path);
            let target = format!(
                "/{}{}",
                percent_encoding::utf8_percent_encode(
                    &below.to_string_lossy(),
                    percent_encoding::NON_ALPHANUMERIC
                )
                .to_string()
                .replace("%2F", "/"),
                request
                    .uri()
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default()
            );
            let (mut parts, body) = request.into_parts();
            parts.uri = target
                .parse::<Uri>()
                .unwrap_or_else(|_| Uri::from_static("/"));
            let served = shared
                .serve
                .clone()
                .oneshot(Request::from_parts(parts, body))
                .await;
            let response = match served {
                Ok(response) => response.map(Body::new),
                Err(never) => match never {},
            };
            let (mut parts, body) = response.into_parts();
            if parts.status.is_success() {
                if let Some(tag) = tag {
                    parts.headers.insert(header::ETAG, tag);
                }
                if let Some(cache) = &shared.cache_control {
                    parts.headers.insert(header::CACHE_CONTROL, cache.clone());
                }
            }
            Ok(Response::from_parts(parts, body))
        }
        .boxed()
    }
}
