//! HTTP authentication in front of the application: Basic against an htpasswd file, or
//! Bearer tokens.
//!
//! Password hashes must be bcrypt (`$2y$`, `$2b$`, `$2a$`), SHA-256-crypt (`$5$`) or
//! SHA-512-crypt (`$6$`); plain text, MD5 and SHA-1 entries are refused when the file is
//! loaded. Slow hash checks run on the blocking pool, and a successful check is
//! remembered (as a keyed digest, compared in constant time) so a browser resending the
//! same credentials costs one hash, not one per request. Credentials are never logged.
//!
//! On success the user goes into the request's extensions as [`AuthenticatedUser`]
//! (`REMOTE_USER` for the WSGI application) and into the [`UserSlot`] an access log
//! above left there. Otherwise the answer is `401` with `WWW-Authenticate`.
//!
//! The layer is tower-http's `AsyncRequireAuthorization` with this module's
//! [`Authorizer`]; only the credential checks are written here.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use base64::Engine;
use futures_util::future::{ready, BoxFuture, Either, Ready};
use http::{header, HeaderValue, Request, Response, StatusCode};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tower::Layer;
use tower_http::auth::{AsyncAuthorizeRequest, AsyncRequireAuthorization};

use crate::request_path::{canonical_prefix, path_under};
use crate::{error_response, AuthenticatedUser, Body, UserSlot};

/// Why credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A line of the htpasswd file is not `user:hash` with a supported hash.
    #[error("{path} line {line}: {message}")]
    Entry {
        /// The file (or variable).
        path: String,
        /// The line, from 1.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
    /// No credentials at all.
    #[error("no credentials found in {0}")]
    Empty(String),
}

/// A supported password hash from an htpasswd file.
#[derive(Clone, Debug)]
pub enum PasswordHash {
    /// `$2y$`, `$2b$`, `$2a$`.
    Bcrypt(String),
    /// `$5$` (SHA-256-crypt) or `$6$` (SHA-512-crypt).
    ShaCrypt(String),
}

impl PasswordHash {
    fn parse(hash: &str) -> Result<Self, String> {
        if hash.starts_with("$2y$") || hash.starts_with("$2b$") || hash.starts_with("$2a$") {
            return Ok(PasswordHash::Bcrypt(hash.to_owned()));
        }
        if hash.starts_with("$5$") || hash.starts_with("$6$") {
            return Ok(PasswordHash::ShaCrypt(hash.to_owned()));
        }
        let kind = if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
            "MD5-crypt"
        } else if hash.starts_with("{SHA}") {
            "unsalted SHA-1"
        } else {
            "plain text or an unknown scheme"
        };
        Err(format!(
            "{kind} is refused; use bcrypt (htpasswd -B) or SHA-512-crypt (mkpasswd -m sha-512)"
        ))
    }

    fn verify(&self, password: &str) -> bool {
        match self {
            PasswordHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            PasswordHash::ShaCrypt(hash) if hash.starts_with("$5$") => {
                sha_crypt::sha256_check(password, hash).is_ok()
            }
            PasswordHash::ShaCrypt(hash) => sha_crypt::sha512_check(password, hash).is_ok(),
        }
    }
}

/// What the layer checks.
#[derive(Clone, Debug)]
pub enum Scheme {
    /// `Authorization: Basic`, against user -> hash.
    Basic(Arc<HashMap<String, PasswordHash>>),
    /// `Authorization: Bearer`, against (name, token) pairs.
    Bearer(Arc<Vec<(String, Vec<u8>)>>),
}

impl Scheme {
    /// Load an htpasswd file.
    pub fn basic_from_htpasswd(path: &Path) -> Result<Self, AuthError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut users = HashMap::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let entry = |message: String| AuthError::Entry {
                path: shown.clone(),
                line: index + 1,
                message,
            };
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| entry("expected user:hash".into()))?;
            let hash =
                PasswordHash::parse(hash).map_err(|m| entry(format!("user {user:?}: {m}")))?;
            users.insert(user.to_owned(), hash);
        }
        if users.is_empty() {
            return Err(AuthError::Empty(shown));
        }
        Ok(Scheme::Basic(Arc::new(users)))
    }

    /// Tokens, one per line or comma-separated: `token` or `name:token` (the name
    /// becomes `REMOTE_USER`; unnamed tokens are `token-1`, `token-2` ...). `#` starts a
    /// comment line. A token cannot contain whitespace: a line such as `alice TOKEN` is
    /// refused (write `alice:TOKEN`).
    pub fn bearer_from_lines(text: &str, source: &str) -> Result<Self, AuthError> {
        let mut tokens: Vec<(String, Vec<u8>)> = Vec::new();
        let entries = text.lines().enumerate().flat_map(|(index, line)| {
            let line = line.trim();
            let comment = line.starts_with('#');
            line.split(',')
                .filter(move |_| !comment)
                .map(move |entry| (index, entry.trim()))
        });
        for (index, line) in entries {
            if line.is_empty() {
                continue;
            }
            let (name, token) = match line.split_once(':') {
                Some((name, token)) => (name.trim().to_owned(), token.trim()),
                None => (format!("token-{}", tokens.len() + 1), line),
            };
            if token.is_empty() || token.chars().any(char::is_whitespace) {
                return Err(AuthError::Entry {
                    path: source.to_owned(),
                    line: index + 1,
                    message: "expected \"token\" or \"name:token\" (a token has no spaces)".into(),
                });
            }
            tokens.push((name, token.as_bytes().to_vec()));
        }
        if tokens.is_empty() {
            return Err(AuthError::Empty(source.to_owned()));
        }
        Ok(Scheme::Bearer(Arc::new(tokens)))
    }

    /// Tokens from a file.
    pub fn bearer_from_file(path: &Path) -> Result<Self, AuthError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| AuthError::Read {
            path: shown.clone(),
            source,
        })?;
        Self::bearer_from_lines(&text, &shown)
    }
}

/// Requires authentication for requests under `paths` and not under `exclude`.
#[derive(Clone, Debug)]
pub struct AuthLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    scheme: Scheme,
    realm: String,
    paths: Vec<String>,
    exclude: Vec<String>,
    /// user -> keyed digest of the last password that verified.
    verified: Mutex<HashMap<String, [u8; 32]>>,
    key: [u8; 32],
}

impl AuthLayer {
    /// Protect everything with `scheme`.
    pub fn new(scheme: Scheme) -> Self {
        let mut key = [0u8; 32];
        let seed = format!("{:?}{}", std::time::SystemTime::now(), std::process::id());
        key.copy_from_slice(&Sha256::digest(seed.as_bytes()));
        Self {
            shared: Arc::new(Shared {
                scheme,
                realm: "restricted".into(),
                paths: vec!["/".into()],
                exclude: Vec::new(),
                verified: Mutex::new(HashMap::new()),
                key,
            }),
        }
    }

    fn shared_mut(&mut self) -> &mut Shared {
        Arc::get_mut(&mut self.shared).expect("configure the layer before cloning it")
    }

    /// The realm shown by browsers.
    pub fn realm(mut self, realm: &str) -> Self {
        self.shared_mut().realm = realm.to_owned();
        self
    }

    /// Only these path prefixes are protected (default: everything).
    pub fn paths(mut self, paths: Vec<String>) -> Self {
        self.shared_mut().paths = paths.iter().map(|p| canonical(p)).collect();
        self
    }

    /// These path prefixes are never protected.
    pub fn exclude(mut self, exclude: Vec<String>) -> Self {
        self.shared_mut().exclude = exclude.iter().map(|p| canonical(p)).collect();
        self
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Auth<S> {
        AsyncRequireAuthorization::new(
            inner,
            Authorizer {
                shared: self.shared.clone(),
            },
        )
    }
}

/// The service made by [`AuthLayer`]: tower-http's `AsyncRequireAuthorization` around
/// this module's [`Authorizer`].
pub type Auth<S> = AsyncRequireAuthorization<S, Authorizer>;

/// Decides each request for [`Auth`]: passes it on (with [`AuthenticatedUser`] in its
/// extensions) or answers 401.
#[derive(Clone, Debug)]
pub struct Authorizer {
    shared: Arc<Shared>,
}

/// A configured prefix in the spelling requests are compared in (see
/// [`crate::request_path`]); one that cannot be canonical is kept as written and so
/// matches nothing a canonical request path can be.
fn canonical(prefix: &str) -> String {
    canonical_prefix(prefix).unwrap_or_else(|_| prefix.to_owned())
}

fn under(path: &str, prefix: &str) -> bool {
    path_under(path, prefix).is_some()
}

/// The outcome of checking a request's credentials.
enum Check {
    Allowed(String),
    /// Needs a slow hash check off the runtime.
    Verify {
        user: String,
        password: String,
        hash: PasswordHash,
    },
    Denied {
        invalid: bool,
    },
}

impl Shared {
    fn protects(&self, path: &str) -> bool {
        self.paths.iter().any(|p| under(path, p)) && !self.exclude.iter().any(|p| under(path, p))
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(self.key);
        hasher.update(user.as_bytes());
        hasher.update([0]);
        hasher.update(password.as_bytes());
        hasher.finalize().into()
    }

    fn check(&self, authorization: Option<&HeaderValue>) -> Check {
        let Some(value) = authorization.and_then(|v| v.to_str().ok()) else {
            return Check::Denied { invalid: false };
        };
        let (kind, credentials) = value.split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        match &self.scheme {
            Scheme::Basic(users) if kind.eq_ignore_ascii_case("basic") => {
                let decoded = base64::engine::general_purpose::STANDARD
                    .decode(credentials)
                    .ok()
                    .and_then(|d| String::from_utf8(d).ok());
                let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':'))
                else {
                    return Check::Denied { invalid: true };
                };
                let Some(hash) = users.get(user) else {
                    return Check::Denied { invalid: true };
                };
                let digest = self.digest(user, password);
                let cached = self
                    .verified
                    .lock()
                    .ok()
                    .and_then(|v| v.get(user).copied())
                    .is_some_and(|known| bool::from(known.ct_eq(&digest)));
                if cached {
                    return Check::Allowed(user.to_owned());
                }
                Check::Verify {
                    user: user.to_owned(),
                    password: password.to_owned(),
                    hash: hash.clone(),
                }
            }
            Scheme::Bearer(tokens) if kind.eq_ignore_ascii_case("bearer") => {
                let given = credentials.as_bytes();
                // Compare against every token so timing does not reveal which matched.
                let mut matched: Option<&str> = None;
                for (name, token) in tokens.iter() {
                    let equal = given.len() == token.len() && bool::from(given.ct_eq(token));
                    if equal && matched.is_none() {
                        matched = Some(name);
                    }
                }
                match matched {
                    Some(name) => Check::Allowed(name.to_owned()),
                    None => Check::Denied { invalid: true },
                }
            }
            _ => Check::Denied { invalid: false },
        }
    }

    fn remember(&self, user: &str, password: &str) {
        let digest = self.digest(user, password);
        if let Ok(mut verified) = self.verified.lock() {
            if verified.len() > 10_000 {
                verified.clear();
            }
            verified.insert(user.to_owned(), digest);
        }
    }

    fn challenge(&self, invalid: bool) -> Response<Body> {
        let mut response = error_response(StatusCode::UNAUTHORIZED);
        let realm = self.realm.replace('"', "'");
        let value = match (&self.scheme, invalid) {
            (Scheme::Basic(_), _) => format!("Basic realm=\"{realm}\", charset=\"UTF-8\""),
            (Scheme::Bearer(_), true) => {
                format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")
            }
            (Scheme::Bearer(_), false) => format!("Bearer realm=\"{realm}\""),
        };
        if let Ok(value) = HeaderValue::try_from(value) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// The outcome of [`Authorizer::authorize`]: decided at once, or after a slow password
/// hash check on the blocking pool.
pub type AuthorizeFuture = Either<
    Ready<Result<Request<Body>, Response<Body>>>,
    BoxFuture<'static, Result<Request<Body>, Response<Body>>>,
>;

impl AsyncAuthorizeRequest<Body> for Authorizer {
    type RequestBody = Body;
    type ResponseBody = Body;
    type Future = AuthorizeFuture;

    fn authorize(&mut self, request: Request<Body>) -> AuthorizeFuture {
        let shared = &self.shared;
        if !shared.protects(request.uri().path()) {
            return Either::Left(ready(Ok(request)));
        }
        match shared.check(request.headers().get(header::AUTHORIZATION)) {
            Check::Allowed(user) => Either::Left(ready(Ok(authenticated(request, user)))),
            Check::Denied { invalid } => {
                tracing::info!(path = request.uri().path(), "authentication required: 401");
                Either::Left(ready(Err(shared.challenge(invalid))))
            }
            Check::Verify {
                user,
                password,
                hash,
            } => {
                let shared = shared.clone();
                Either::Right(Box::pin(async move {
                    let verified = tokio::task::spawn_blocking(move || {
                        let ok = hash.verify(&password);
                        (ok, password)
                    })
                    .await;
                    match verified {
                        Ok((true, password)) => {
                            shared.remember(&user, &password);
                            Ok(authenticated(request, user))
                        }
                        _ => {
                            tracing::info!(user = %user, "wrong password: 401");
                            Err(shared.challenge(true))
                        }
                    }
                }))
            }
        }
    }
}

/// `request` with its user recorded for the application (`REMOTE_USER`) and for an
/// access log above ([`UserSlot`]).
fn authenticated(mut request: Request<Body>, user: String) -> Request<Body> {
    if let Some(slot) = request.extensions().get::<UserSlot>() {
        slot.set(&user);
    }
    request.extensions_mut().insert(AuthenticatedUser(user));
    request
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_weak_hashes() {
        assert!(PasswordHash::parse("secret").is_err());
        assert!(PasswordHash::parse("$apr1$abc$def").is_err());
        assert!(PasswordHash::parse("{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=").is_err());
        let hash = bcrypt::hash("pw", 4).unwrap();
        assert!(PasswordHash::parse(&hash).unwrap().verify("pw"));
        assert!(!PasswordHash::parse(&hash).unwrap().verify("nope"));
    }

    #[test]
    fn prefixes_match_whole_segments() {
        assert!(under("/admin", "/admin"));
        assert!(under("/admin/x", "/admin"));
        assert!(!under("/administrator", "/admin"));
        assert!(under("/anything", "/"));
    }
}
