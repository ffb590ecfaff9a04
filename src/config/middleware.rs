//! `[[middleware]]`: the pipeline, outermost entry first. Each entry has a `kind`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

use super::app_spec::AppSpec;
use super::units::ByteSize;

/// One layer of the pipeline.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MiddlewareConfig {
    /// One line per response.
    AccessLog(AccessLogConfig),
    /// gzip / br / zstd response compression.
    Compression(CompressionConfig),
    /// HTTP Basic or Bearer authentication.
    Auth(AuthConfig),
    /// Files from a folder under a mount prefix.
    Static(StaticConfig),
    /// A Python WSGI middleware.
    Python(PythonConfig),
    /// Request and response header changes.
    Headers(HeadersConfig),
}

impl MiddlewareConfig {
    /// The `kind` string, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            MiddlewareConfig::AccessLog(_) => "access_log",
            MiddlewareConfig::Compression(_) => "compression",
            MiddlewareConfig::Auth(_) => "auth",
            MiddlewareConfig::Static(_) => "static",
            MiddlewareConfig::Python(_) => "python",
            MiddlewareConfig::Headers(_) => "headers",
        }
    }
}

/// `kind = "access_log"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AccessLogConfig {
    /// `"combined"` (Apache/gunicorn default), `"json"`, or a gunicorn
    /// `access_log_format` string such as `'%(h)s "%(r)s" %(s)s %(D)s'`.
    pub format: String,
    /// `"stdout"`, `"stderr"`, or a file path (relative to the config file).
    pub output: String,
}

impl Default for AccessLogConfig {
    fn default() -> Self {
        Self {
            format: "combined".into(),
            output: "stdout".into(),
        }
    }
}

/// `kind = "compression"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompressionConfig {
    /// Codings offered, preferred first at equal q-value: `"br"`, `"zstd"`, `"gzip"`.
    pub encodings: Vec<String>,
    /// Bodies known to be smaller are not compressed.
    pub min_size: ByteSize,
    /// gzip level, 1-9.
    pub gzip_level: u32,
    /// brotli quality, 0-11.
    pub brotli_quality: u32,
    /// zstd level, 1-22.
    pub zstd_level: i32,
}

impl Default for CompressionConfig {
    fn default() -> Self {
        Self {
            encodings: vec!["br".into(), "zstd".into(), "gzip".into()],
            min_size: ByteSize(256),
            gzip_level: 6,
            brotli_quality: 4,
            zstd_level: 3,
        }
    }
}

/// The authentication scheme of `kind = "auth"`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// HTTP Basic against `htpasswd`.
    #[default]
    Basic,
    /// Bearer tokens from `tokens_file` or `tokens_env`.
    Bearer,
}

/// `kind = "auth"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// `"basic"` or `"bearer"`.
    pub scheme: AuthScheme,
    /// htpasswd file (bcrypt or SHA-256/512-crypt entries), for `basic`.
    pub htpasswd: Option<PathBuf>,
    /// File of tokens, one per line (`token` or `name:token`), for `bearer`.
    pub tokens_file: Option<PathBuf>,
    /// Environment variable holding comma-separated tokens, for `bearer`.
    pub tokens_env: Option<String>,
    /// Realm shown in the browser's prompt.
    pub realm: String,
    /// Path prefixes that require authentication.
    pub paths: Vec<String>,
    /// Path prefixes that never do (health checks, public assets).
    pub exclude: Vec<String>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            scheme: AuthScheme::Basic,
            htpasswd: None,
            tokens_file: None,
            tokens_env: None,
            realm: "restricted".into(),
            paths: vec!["/".into()],
            exclude: Vec::new(),
        }
    }
}

/// `kind = "static"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StaticConfig {
    /// URL prefix, e.g. `"/static"` (`"/"` for everything). Required in
    /// `[[middleware]]`; a route's `static` table takes the route's `path` instead.
    #[serde(default)]
    pub mount: String,
    /// Folder to serve, relative to the config file.
    pub dir: PathBuf,
    /// `Cache-Control` for served files, e.g. `"public, max-age=86400"`.
    #[serde(default)]
    pub cache_control: Option<String>,
    /// Serve `.br`/`.gz`/`.zst` siblings to clients that accept them.
    #[serde(default = "yes")]
    pub precompressed: bool,
    /// A miss goes on to the next layer (true) or gets 404 (false).
    #[serde(default = "yes")]
    pub fallthrough: bool,
    /// Bytes of small files (and their compressed variants) held in memory per worker,
    /// e.g. `"64MiB"`; `0` turns the cache off.
    #[serde(default = "static_cache_size")]
    pub cache_size: ByteSize,
    /// Files up to this size are cached; larger ones are streamed from disk.
    #[serde(default = "static_cache_max_file")]
    pub cache_max_file: ByteSize,
    /// Below a `compression` layer, compress cached text files once (gzip 9, brotli 11,
    /// zstd 19) and serve the variants from memory instead of compressing per request.
    #[serde(default = "yes")]
    pub compress: bool,
}

impl StaticConfig {
    /// `dir` served under `mount`, every other option at its default.
    pub fn new(mount: String, dir: PathBuf) -> Self {
        Self {
            mount,
            dir,
            cache_control: None,
            precompressed: true,
            fallthrough: true,
            cache_size: static_cache_size(),
            cache_max_file: static_cache_max_file(),
            compress: true,
        }
    }
}

fn yes() -> bool {
    true
}

fn static_cache_size() -> ByteSize {
    ByteSize(64 << 20)
}

fn static_cache_max_file() -> ByteSize {
    ByteSize(1 << 20)
}

/// `kind = "python"`: exactly one of `factory`, `filter_factory` and
/// `filter_app_factory`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PythonConfig {
    /// `"module:callable"` called as `callable(app, **options)`.
    pub factory: Option<AppSpec>,
    /// `"module:callable"` called as `callable(global_conf, **options)(app)`
    /// (PasteDeploy's `paste.filter_factory`).
    pub filter_factory: Option<AppSpec>,
    /// `"module:callable"` called as `callable(app, global_conf, **options)`
    /// (PasteDeploy's `paste.filter_app_factory`, the form of Paste's own filters).
    pub filter_app_factory: Option<AppSpec>,
    /// Keyword arguments, passed as they are written (strings, numbers, booleans,
    /// arrays, tables).
    pub options: BTreeMap<String, serde_json::Value>,
    /// The `global_conf` dict the two PasteDeploy forms receive (default empty): what
    /// PasteDeploy passes from the `.ini`'s `[DEFAULT]` section. `here` and `__file__`,
    /// which PasteDeploy sets to the `.ini`'s folder and path, are paths relative to
    /// this config file's folder when they are not absolute.
    pub global_conf: BTreeMap<String, String>,
}

impl PythonConfig {
    /// The factory named, whichever form it is.
    pub fn spec(&self) -> Option<&AppSpec> {
        self.factory
            .as_ref()
            .or(self.filter_factory.as_ref())
            .or(self.filter_app_factory.as_ref())
    }

    /// True when exactly one of the three factory keys is set.
    pub fn has_one_factory(&self) -> bool {
        [
            self.factory.is_some(),
            self.filter_factory.is_some(),
            self.filter_app_factory.is_some(),
        ]
        .iter()
        .filter(|set| **set)
        .count()
            == 1
    }
}

/// Header changes for one direction.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HeaderRules {
    /// Replace (or add) these headers.
    pub set: BTreeMap<String, String>,
    /// Add these values, keeping existing ones.
    pub append: BTreeMap<String, String>,
    /// Remove these headers.
    pub remove: Vec<String>,
}

/// `kind = "headers"`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct HeadersConfig {
    /// Changes to requests, before the layers below see them.
    pub request: HeaderRules,
    /// Changes to responses, after the layers below made them.
    pub response: HeaderRules,
}
