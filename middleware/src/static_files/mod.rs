//! Files from a folder under a mount prefix, in front of the application, at the speed
//! of a dedicated file server.
//!
//! # How a request is served
//!
//! - **Hot small files from memory.** Files up to `cache_max_file` (1 MiB by default)
//!   are held in a cache with a byte budget (`cache_size`, 64 MiB by default, per
//!   worker): the bytes as `Bytes`, the headers made once (ETag, Last-Modified,
//!   Content-Type, Content-Length), and the precompressed siblings. A hit is answered
//!   inside `call`, with no task, no blocking-pool round trip and no copy.
//! - **Never more than a second stale.** A cached lookup is served only while it is
//!   less than a second old. From half a second on, a hit starts one revalidation in the
//!   background (resolve the path again, stat the file and its siblings, read them again
//!   if size, mtime, ctime, inode or device changed) and is still answered from memory;
//!   a request that finds the lookup over a second old (after a quiet spell) waits for
//!   a new one on the blocking pool. So an edit, an atomic replace (rename over the old
//!   file) or a delete is seen by the first request at most one second after it, a hot
//!   file costs two stat rounds a second whatever the request rate, and no request
//!   waits for the disk under steady traffic. Stat polling rather than inotify: it
//!   needs no watch per directory (no `max_user_watches` limit, no missed events on
//!   network or overlay file systems, symlink swaps of whole release folders included)
//!   and its cost is bounded by the number of hot files, not by the tree. Misses are
//!   remembered for a second too (in a sixteenth of the budget), so an application
//!   mounted under a static `"/"` does not pay a file-system lookup per request.
//! - **Large files from disk**, streamed in 256 KiB `pread`s one chunk ahead (see
//!   `body.rs` for why not `sendfile`): memory per response stays at two chunks.
//! - **Compressed once.** Below a `compression` layer (which announces the coding it
//!   would use in a [`CompressionOffer`]), a cached text file's gzip/br/zstd variant is
//!   made once at the highest level in the background and then served from memory
//!   with `Content-Encoding`, `Vary: Accept-Encoding` and its own ETag; the compression
//!   layer passes encoded responses through. See `encode.rs`.
//! - Preconditions and ranges (304, 412, single-range 206, 416, HEAD) are in
//!   `response.rs`; containment (no `..`, no symlink out of the folder) in `resolve.rs`;
//!   the budgeted CLOCK cache in `cache.rs`; cached files and lookups in `file.rs`.
//! - A directory with an `index.html` serves it for `dir/` and redirects `dir` to
//!   `dir/` (301, as nginx); a miss falls through to the inner service (so the
//!   application still serves routes it owns under the prefix) unless `fallthrough` is
//!   off; only GET and HEAD are served, other methods go to the inner service.
//!
//! tower-http's `ServeDir` is not used: its backend hands out an `AsyncRead`, so even a
//! file in memory is copied into fresh buffers on every request, behind several boxed
//! futures and a blocking-pool open; the conditional and range rules here are the same
//! for both paths.
//!
//! ```no_run
//! use gateway_middleware::static_files::StaticFilesLayer;
//! let layer = StaticFilesLayer::new("/static", "public".as_ref())
//!     .unwrap()
//!     .cache_control("public, max-age=3600")
//!     .unwrap()
//!     .cache_size(64 << 20)
//!     .cache_max_file(1 << 20);
//! # let _ = layer;
//! ```
//!
//! For a static tree as a terminal service (a route's `static` action), use
//! [`StaticFilesLayer::terminal`]: misses get 404, other methods 405.

mod body;
mod cache;
mod encode;
mod file;
mod resolve;
mod response;

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::task::JoinHandle;
use tower::{Layer, Service};

use self::cache::{Admission, Cache};
use self::file::{CachedFile, Found, Settings, REFRESH_AFTER_MS, REVALIDATE_AFTER_MS};
use self::resolve::SIBLINGS;
use self::response::{respond, Extra};
use crate::compression::{negotiate, CompressionOffer, Encoding};
use crate::request_path::canonical_prefix;
use crate::{error_response, Body};

/// Why the layer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum StaticFilesError {
    /// The folder does not exist or is not readable.
    #[error("static dir {path}: {source}")]
    Dir {
        /// The folder as configured.
        path: String,
        /// Why it cannot be used.
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

/// Default of [`StaticFilesLayer::cache_size`]: 64 MiB.
pub const DEFAULT_CACHE_SIZE: u64 = 64 << 20;
/// Default of [`StaticFilesLayer::cache_max_file`]: 1 MiB.
pub const DEFAULT_CACHE_MAX_FILE: u64 = 1 << 20;

/// Serves files from `dir` for requests under `mount`.
#[derive(Clone, Debug)]
pub struct StaticFilesLayer {
    shared: Arc<Shared>,
}

/// A remembered miss.
#[derive(Debug)]
struct Miss {
    /// Outside the folder: 404 even when falling through.
    forbidden: bool,
    at_ms: u64,
    /// A background lookup is under way.
    refreshing: AtomicBool,
}

#[derive(Debug)]
struct Shared {
    mount: String,
    settings: Settings,
    cache_control: Option<HeaderValue>,
    fallthrough: bool,
    compress: bool,
    files: Cache<CachedFile>,
    misses: Cache<Miss>,
    /// The origin of the millisecond clock of freshness checks.
    epoch: Instant,
    /// A compressed-once variant is being made (one at a time).
    making: AtomicBool,
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
        // Checked now (a wrong `dir` is a configuration error), resolved again at each
        // lookup (see `Settings::root`).
        let canonical = std::fs::canonicalize(dir).map_err(|source| StaticFilesError::Dir {
            path: dir.display().to_string(),
            source,
        })?;
        std::fs::read_dir(&canonical).map_err(|source| StaticFilesError::Dir {
            path: canonical.display().to_string(),
            source,
        })?;
        let root = std::path::absolute(dir).unwrap_or(canonical);
        Ok(Self {
            shared: Arc::new(Shared {
                mount,
                settings: Settings {
                    root,
                    precompressed: true,
                    max_file: DEFAULT_CACHE_MAX_FILE,
                },
                cache_control: None,
                fallthrough: true,
                compress: true,
                files: Cache::new(DEFAULT_CACHE_SIZE),
                misses: Cache::new(DEFAULT_CACHE_SIZE / 16),
                epoch: Instant::now(),
                making: AtomicBool::new(false),
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
        self.shared_mut().settings.precompressed = enabled;
        self
    }

    /// Bytes of file content (and compressed variants) held in memory, 0 for none.
    /// Remembered misses get a sixteenth of it on top.
    pub fn cache_size(mut self, bytes: u64) -> Self {
        let shared = self.shared_mut();
        shared.files = Cache::new(bytes);
        shared.misses = Cache::new(bytes / 16);
        self
    }

    /// Files larger than this (or with a larger precompressed sibling) are streamed
    /// from disk instead of held in memory.
    pub fn cache_max_file(mut self, bytes: u64) -> Self {
        self.shared_mut().settings.max_file = bytes;
        self
    }

    /// Whether cached text files are compressed once when a `compression` layer sits
    /// above (see the module docs).
    pub fn compress(mut self, enabled: bool) -> Self {
        self.shared_mut().compress = enabled;
        self
    }

    /// The folder as the whole service (a route's static action): misses get 404,
    /// methods other than GET and HEAD 405.
    pub fn terminal(&self) -> StaticFiles<NotFound> {
        self.layer(NotFound)
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

/// The inner service of [`StaticFilesLayer::terminal`]: 404 for GET and HEAD (a miss),
/// 405 with `Allow: GET, HEAD` for other methods.
#[derive(Clone, Copy, Debug, Default)]
pub struct NotFound;

impl Service<Request<Body>> for NotFound {
    type Response = Response<Body>;
    type Error = std::convert::Infallible;
    type Future = std::future::Ready<Result<Response<Body>, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        if matches!(*request.method(), Method::GET | Method::HEAD) {
            return std::future::ready(Ok(error_response(StatusCode::NOT_FOUND)));
        }
        let mut response = error_response(StatusCode::METHOD_NOT_ALLOWED);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        std::future::ready(Ok(response))
    }
}

impl Shared {
    /// The path below the mount for a GET or HEAD under it.
    fn relative<'a>(&self, request: &'a Request<Body>) -> Option<&'a str> {
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            return None;
        }
        let rest = request.uri().path().strip_prefix(self.mount.as_str())?;
        (rest.is_empty() || rest.starts_with('/')).then_some(rest)
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// The blocking lookup of `relative`, and what the caches learn from it.
    fn find(
        &self,
        relative: &str,
        cached: Option<Arc<CachedFile>>,
        accept: Option<HeaderValue>,
        now_ms: u64,
    ) -> Found {
        let found = file::find(
            &self.settings,
            relative,
            cached.as_ref(),
            accept.as_ref(),
            now_ms,
        );
        let unchanged =
            |file: &Arc<CachedFile>| cached.as_ref().is_some_and(|c| Arc::ptr_eq(c, file));
        match &found {
            Found::Small(file) if unchanged(file) => {}
            Found::Small(file) => {
                let admission = self.files.insert(relative, file.clone(), file.weight());
                if let Admission::Stored { evicted } = admission {
                    let usage = self.files.usage();
                    tracing::debug!(
                        path = relative,
                        evicted,
                        entries = usage.entries,
                        bytes = usage.bytes,
                        budget = usage.budget,
                        "static cache: stored"
                    );
                }
            }
            Found::Missing | Found::Forbidden => {
                if let Some(cached) = &cached {
                    self.files.remove(relative, cached);
                }
                let miss = Miss {
                    forbidden: matches!(found, Found::Forbidden),
                    at_ms: now_ms,
                    refreshing: AtomicBool::new(false),
                };
                self.misses.insert(relative, Arc::new(miss), 0);
            }
            Found::Large(_) | Found::Directory | Found::Failed(_) => {
                if let Some(cached) = &cached {
                    self.files.remove(relative, cached);
                }
            }
        }
        found
    }

    /// Look `relative` up again in the background (the caches take what it finds),
    /// then call `done`.
    fn refresh(
        self: &Arc<Self>,
        relative: &str,
        cached: Option<Arc<CachedFile>>,
        now_ms: u64,
        done: impl FnOnce() + Send + 'static,
    ) {
        let shared = self.clone();
        let relative = relative.to_owned();
        tokio::task::spawn_blocking(move || {
            shared.find(&relative, cached, None, now_ms);
            done();
        });
    }

    /// The response for a small file in memory.
    fn serve_cached(
        self: &Arc<Self>,
        request: &Request<Body>,
        relative: &str,
        file: &Arc<CachedFile>,
    ) -> Response<Body> {
        let offer = request
            .extensions()
            .get::<CompressionOffer>()
            .filter(|offer| {
                self.compress
                    && file.compressible
                    && file.identity.body.len() as u64 >= offer.min_size
            });
        let mut available = [Encoding::Gzip; 3];
        let mut count = 0;
        for encoding in SIBLINGS {
            let at = resolve::slot(encoding);
            if file.siblings[at].is_some() || offer.is_some_and(|o| o.encoding == encoding) {
                available[count] = encoding;
                count += 1;
            }
        }
        let chosen = match count {
            0 => None,
            _ => request
                .headers()
                .get(header::ACCEPT_ENCODING)
                .and_then(|accept| accept.to_str().ok())
                .and_then(|accept| negotiate(accept, &available[..count])),
        };
        let (variant, encoding) = match chosen {
            None => (&file.identity, None),
            Some(encoding) => {
                let at = resolve::slot(encoding);
                match (&file.siblings[at], file.made[at].get()) {
                    (Some(sibling), _) => (sibling, Some(encoding)),
                    (None, Some(made)) => (made, Some(encoding)),
                    (None, None) => {
                        // This time the compression layer above compresses it.
                        self.make_variant(relative, file, encoding);
                        (&file.identity, None)
                    }
                }
            }
        };
        let extra = Extra {
            cache_control: self.cache_control.as_ref(),
            vary: count > 0,
        };
        respond(
            request.method(),
            request.headers(),
            &variant.meta.representation(&file.content_type, encoding),
            &extra,
            |start, end| Body::from(slice(&variant.body, start, end)),
        )
    }

    /// Start making the `encoding` variant of `file` in the background, unless it is
    /// under way or another variant is being made.
    fn make_variant(self: &Arc<Self>, relative: &str, file: &Arc<CachedFile>, encoding: Encoding) {
        let at = resolve::slot(encoding);
        if file.making[at].load(Ordering::Relaxed)
            || self
                .making
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        if file.making[at].swap(true, Ordering::Relaxed) {
            self.making.store(false, Ordering::Release);
            return;
        }
        let shared = self.clone();
        let file = file.clone();
        let relative = relative.to_owned();
        tokio::task::spawn_blocking(move || {
            // Released even if the encoder panics.
            struct Release<'a>(&'a AtomicBool);
            impl Drop for Release<'_> {
                fn drop(&mut self) {
                    self.0.store(false, Ordering::Release);
                }
            }
            let _release = Release(&shared.making);
            match encode::encode(encoding, &file.identity.body) {
                Ok(body) => {
                    if let Some(added) = file.set_made(encoding, body) {
                        let kept = shared.files.grow(&relative, &file, added);
                        let usage = shared.files.usage();
                        tracing::debug!(
                            path = relative,
                            encoding = encoding.token(),
                            size = added,
                            kept,
                            entries = usage.entries,
                            bytes = usage.bytes,
                            budget = usage.budget,
                            "static cache: compressed once"
                        );
                    }
                }
                Err(error) => {
                    tracing::warn!(path = relative, "static: cannot compress: {error}");
                }
            }
        });
    }

    /// The response for what a blocking lookup found, or the request back when it
    /// falls through.
    fn answer(self: &Arc<Self>, found: Found, request: Request<Body>) -> Answered {
        match found {
            Found::Small(file) => {
                let relative = self.relative(&request).unwrap_or_default();
                Answered::Response(self.serve_cached(&request, relative, &file))
            }
            Found::Large(large) => {
                let extra = Extra {
                    cache_control: self.cache_control.as_ref(),
                    vary: large.vary,
                };
                let representation = large
                    .meta
                    .representation(&large.content_type, large.encoding);
                let file = large.file;
                Answered::Response(respond(
                    request.method(),
                    request.headers(),
                    &representation,
                    &extra,
                    |start, end| Body::new(body::FileBody::new(file, start, end)),
                ))
            }
            Found::Directory => Answered::Response(redirect_to_directory(&request)),
            Found::Missing => self.miss(request, false),
            Found::Forbidden => self.miss(request, true),
            Found::Failed(error) => {
                tracing::warn!(path = %request.uri().path(), "static: cannot read: {error}");
                Answered::Response(error_response(StatusCode::INTERNAL_SERVER_ERROR))
            }
        }
    }

    fn miss(&self, request: Request<Body>, forbidden: bool) -> Answered {
        if forbidden {
            tracing::info!(path = %request.uri().path(), "static: outside the folder: 404");
            return Answered::Response(error_response(StatusCode::NOT_FOUND));
        }
        if self.fallthrough {
            return Answered::FallThrough(request);
        }
        Answered::Response(error_response(StatusCode::NOT_FOUND))
    }
}

/// What [`Shared::answer`] decided.
enum Answered {
    /// Served here.
    Response(Response<Body>),
    /// A miss for the inner service.
    FallThrough(Request<Body>),
}

fn slice(bytes: &Bytes, start: u64, end: u64) -> Bytes {
    // Ranges are within the representation's length, which is the body's.
    bytes.slice(start as usize..end as usize)
}

/// `301` from `dir` to `dir/`, keeping the query.
fn redirect_to_directory(request: &Request<Body>) -> Response<Body> {
    let location = match request.uri().query() {
        Some(query) => format!("{}/?{query}", request.uri().path()),
        None => format!("{}/", request.uri().path()),
    };
    let mut response = error_response(StatusCode::MOVED_PERMANENTLY);
    match HeaderValue::try_from(location) {
        // The canonical path and the query are visible ASCII already.
        Ok(location) => {
            response.headers_mut().insert(header::LOCATION, location);
            response
        }
        Err(_) => error_response(StatusCode::NOT_FOUND),
    }
}

impl<S> Service<Request<Body>> for StaticFiles<S>
where
    S: Service<Request<Body>, Response = Response<Body>> + Clone,
{
    type Response = Response<Body>;
    type Error = S::Error;
    type Future = ResponseFuture<S, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let Some(relative) = self.shared.relative(&request) else {
            return ResponseFuture::inner(self.inner.call(request));
        };
        let now = self.shared.now_ms();
        let cached = self.shared.files.get(relative);
        if let Some(file) = &cached {
            let age = file.age(now);
            if age < REVALIDATE_AFTER_MS {
                if age >= REFRESH_AFTER_MS && !file.refreshing.swap(true, Ordering::Relaxed) {
                    let owner = file.clone();
                    self.shared
                        .refresh(relative, Some(file.clone()), now, move || {
                            owner.refreshing.store(false, Ordering::Relaxed)
                        });
                }
                let response = self.shared.serve_cached(&request, relative, file);
                return ResponseFuture::ready(response);
            }
        } else if let Some(miss) = self.shared.misses.get(relative) {
            let age = now.saturating_sub(miss.at_ms);
            if age < REVALIDATE_AFTER_MS {
                if age >= REFRESH_AFTER_MS && !miss.refreshing.swap(true, Ordering::Relaxed) {
                    let owner = miss.clone();
                    self.shared.refresh(relative, None, now, move || {
                        owner.refreshing.store(false, Ordering::Relaxed)
                    });
                }
                return match self.shared.miss(request, miss.forbidden) {
                    Answered::Response(response) => ResponseFuture::ready(response),
                    Answered::FallThrough(request) => {
                        ResponseFuture::inner(self.inner.call(request))
                    }
                };
            }
        }
        // Not cached, or due for revalidation: look on disk, off the runtime.
        let relative = relative.to_owned();
        let accept = request.headers().get(header::ACCEPT_ENCODING).cloned();
        let shared = self.shared.clone();
        let lookup =
            tokio::task::spawn_blocking(move || shared.find(&relative, cached, accept, now));
        // The inner service that was made ready goes with the request, in case it falls
        // through; this one keeps a fresh clone.
        let clone = self.inner.clone();
        let inner = std::mem::replace(&mut self.inner, clone);
        ResponseFuture {
            state: State::Finding {
                lookup,
                request: Some(request),
                inner: Some(inner),
                shared: self.shared.clone(),
            },
        }
    }
}

pin_project! {
    /// The response future of [`StaticFiles`]: a response made in `call` (a cached
    /// file), a blocking lookup then maybe the inner service, or the inner service.
    pub struct ResponseFuture<S, F> {
        #[pin]
        state: State<S, F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, F> {
        Ready { response: Option<Response<Body>> },
        Finding {
            lookup: JoinHandle<Found>,
            request: Option<Request<Body>>,
            inner: Option<S>,
            shared: Arc<Shared>,
        },
        Inner { #[pin] future: F },
    }
}

impl<S, F> ResponseFuture<S, F> {
    fn ready(response: Response<Body>) -> Self {
        Self {
            state: State::Ready {
                response: Some(response),
            },
        }
    }

    fn inner(future: F) -> Self {
        Self {
            state: State::Inner { future },
        }
    }
}

impl<S, F, E> Future for ResponseFuture<S, F>
where
    S: Service<Request<Body>, Response = Response<Body>, Error = E, Future = F>,
    F: Future<Output = Result<Response<Body>, E>>,
{
    type Output = Result<Response<Body>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match self.as_mut().project().state.project() {
                StateProj::Ready { response } => {
                    return Poll::Ready(Ok(response.take().expect("polled after completion")))
                }
                StateProj::Inner { future } => return future.poll(cx),
                StateProj::Finding {
                    lookup,
                    request,
                    inner,
                    shared,
                } => {
                    let found = match std::task::ready!(Pin::new(lookup).poll(cx)) {
                        Ok(found) => found,
                        Err(error) => Found::Failed(std::io::Error::other(error)),
                    };
                    let request = request.take().expect("polled after completion");
                    match shared.answer(found, request) {
                        Answered::Response(response) => return Poll::Ready(Ok(response)),
                        Answered::FallThrough(request) => {
                            let mut inner = inner.take().expect("polled after completion");
                            State::Inner {
                                future: inner.call(request),
                            }
                        }
                    }
                }
            };
            self.as_mut().project().state.set(next);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;
    use std::convert::Infallible;
    use std::time::Duration;
    use tower::ServiceExt;

    fn site(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("static-layer-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("app.css"), "body { color: red }\n".repeat(50)).unwrap();
        dir
    }

    fn get(target: &str) -> Request<Body> {
        Request::get(target).body(Body::empty()).unwrap()
    }

    async fn text(response: Response<Body>) -> String {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn misses_and_other_methods_reach_the_inner_service() {
        let dir = site("inner");
        let layer = StaticFilesLayer::new("/static", &dir).unwrap();
        let inner = tower::service_fn(|request: Request<Body>| async move {
            Ok::<_, Infallible>(Response::new(Body::from(format!(
                "inner {}",
                request.uri()
            ))))
        });
        let service = layer.layer(inner);
        let hit = service
            .clone()
            .oneshot(get("/static/app.css"))
            .await
            .unwrap();
        assert!(text(hit).await.starts_with("body"));
        let miss = service.clone().oneshot(get("/static/none")).await.unwrap();
        assert_eq!(text(miss).await, "inner /static/none");
        let outside = service
            .clone()
            .oneshot(get("/staticx/app.css"))
            .await
            .unwrap();
        assert_eq!(text(outside).await, "inner /staticx/app.css");
        let post = Request::post("/static/app.css")
            .body(Body::empty())
            .unwrap();
        let post = service.oneshot(post).await.unwrap();
        assert_eq!(text(post).await, "inner /static/app.css");
    }

    #[tokio::test]
    async fn the_terminal_service_answers_404_and_405() {
        let dir = site("terminal");
        let service = StaticFilesLayer::new("/", &dir).unwrap().terminal();
        let hit = service.clone().oneshot(get("/app.css")).await.unwrap();
        assert_eq!(hit.status(), StatusCode::OK);
        let miss = service.clone().oneshot(get("/none.css")).await.unwrap();
        assert_eq!(miss.status(), StatusCode::NOT_FOUND);
        let post = Request::post("/app.css").body(Body::empty()).unwrap();
        let post = service.oneshot(post).await.unwrap();
        assert_eq!(post.status(), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(post.headers()[header::ALLOW], "GET, HEAD");
    }

    #[tokio::test]
    async fn an_offered_coding_is_made_once_and_counted_in_the_budget() {
        let dir = site("offer");
        let layer = StaticFilesLayer::new("/static", &dir).unwrap();
        let service = layer.terminal();
        let request = || {
            let mut request = get("/static/app.css");
            request
                .headers_mut()
                .insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
            request.extensions_mut().insert(CompressionOffer {
                encoding: Encoding::Gzip,
                min_size: 0,
            });
            request
        };
        // The file alone first, so the budget is measured before any variant exists
        // (a variant is made in the background and may be ready at once).
        let warm = service
            .clone()
            .oneshot(get("/static/app.css"))
            .await
            .unwrap();
        assert_eq!(warm.status(), StatusCode::OK);
        let before = layer.shared.files.usage().bytes;
        let first = service.clone().oneshot(request()).await.unwrap();
        assert_eq!(first.headers().get(header::CONTENT_ENCODING), None);
        let deadline = Instant::now() + Duration::from_secs(20);
        let variant = loop {
            let response = service.clone().oneshot(request()).await.unwrap();
            if response.headers().contains_key(header::CONTENT_ENCODING) {
                break response;
            }
            assert!(Instant::now() < deadline, "no variant");
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(variant.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(variant.headers()[header::VARY], "accept-encoding");
        let length: u64 = variant.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(layer.shared.files.usage().bytes, before + length);
        // Without the offer (no compression layer above): the file itself.
        let mut plain = get("/static/app.css");
        plain
            .headers_mut()
            .insert(header::ACCEPT_ENCODING, HeaderValue::from_static("gzip"));
        let plain = service.oneshot(plain).await.unwrap();
        assert_eq!(plain.headers().get(header::CONTENT_ENCODING), None);
        assert_eq!(plain.headers().get(header::VARY), None);
    }
}
