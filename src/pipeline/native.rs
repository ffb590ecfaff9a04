//! `[[middleware]]` entries of native kinds, turned into tower layers.

use std::path::Path;

use gateway_middleware::access_log::{AccessLogLayer, LogFormat, Output};
use gateway_middleware::auth::{AuthLayer, Scheme};
use gateway_middleware::compression::{CompressionLayer, Encoding, Levels};
use gateway_middleware::headers::{HeaderOp, HeadersLayer};
use gateway_middleware::static_files::StaticFilesLayer;
use tower::{Layer, ServiceExt};

use crate::config::{
    AccessLogConfig, AuthConfig, AuthScheme, CompressionConfig, HeaderRules, HeadersConfig,
    StaticConfig,
};
use crate::types::{GatewayService, NativeLayer};

fn boxed<L>(layer: L) -> NativeLayer
where
    L: Layer<GatewayService> + Send + Sync + 'static,
    L::Service: tower::Service<
            http::Request<axum::body::Body>,
            Response = http::Response<axum::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    <L::Service as tower::Service<http::Request<axum::body::Body>>>::Future: Send + 'static,
{
    std::sync::Arc::new(move |inner| layer.layer(inner).boxed_clone())
}

/// Build the access log layer (opens its output).
pub(super) fn access_log(config: &AccessLogConfig, base: &Path) -> Result<NativeLayer, String> {
    let format = LogFormat::parse(&config.format).map_err(|e| format!("format: {e}"))?;
    let output = match Output::parse(&config.output) {
        Output::File(path) => Output::File(base.join(path)),
        other => other,
    };
    let layer = AccessLogLayer::new(format, &output)
        .map_err(|e| format!("output {:?}: {e}", config.output))?;
    Ok(boxed(layer))
}

/// Build the compression layer.
pub(super) fn compression(config: &CompressionConfig) -> Result<NativeLayer, String> {
    let encodings = config
        .encodings
        .iter()
        .map(|name| {
            Encoding::parse(name)
                .ok_or_else(|| format!("encodings: unknown {name:?}, expected br, zstd or gzip"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !(1..=9).contains(&config.gzip_level) {
        return Err(format!(
            "gzip_level must be 1..=9, got {}",
            config.gzip_level
        ));
    }
    if config.brotli_quality > 11 {
        return Err(format!(
            "brotli_quality must be 0..=11, got {}",
            config.brotli_quality
        ));
    }
    if !(1..=22).contains(&config.zstd_level) {
        return Err(format!(
            "zstd_level must be 1..=22, got {}",
            config.zstd_level
        ));
    }
    Ok(boxed(
        CompressionLayer::new()
            .encodings(encodings)
            .min_size(config.min_size.0)
            .levels(Levels {
                gzip: config.gzip_level,
                brotli: config.brotli_quality,
                zstd: config.zstd_level,
            }),
    ))
}

/// Build the auth layer (reads its credentials).
pub(super) fn auth(config: &AuthConfig, base: &Path) -> Result<NativeLayer, String> {
    let scheme = match config.scheme {
        AuthScheme::Basic => {
            let path = config
                .htpasswd
                .as_ref()
                .ok_or("scheme = \"basic\" needs htpasswd = \"FILE\"")?;
            Scheme::basic_from_htpasswd(&base.join(path)).map_err(|e| e.to_string())?
        }
        AuthScheme::Bearer => match (&config.tokens_file, &config.tokens_env) {
            (Some(file), None) => {
                Scheme::bearer_from_file(&base.join(file)).map_err(|e| e.to_string())?
            }
            (None, Some(var)) => {
                let tokens =
                    std::env::var(var).map_err(|_| format!("tokens_env: ${var} is not set"))?;
                Scheme::bearer_from_lines(&tokens, &format!("${var}")).map_err(|e| e.to_string())?
            }
            _ => {
                return Err(
                    "scheme = \"bearer\" needs exactly one of tokens_file and tokens_env".into(),
                )
            }
        },
    };
    Ok(boxed(
        AuthLayer::new(scheme)
            .realm(&config.realm)
            .paths(config.paths.clone())
            .exclude(config.exclude.clone()),
    ))
}

/// Build the static files layer (checks the folder).
pub(super) fn static_files(config: &StaticConfig, base: &Path) -> Result<NativeLayer, String> {
    if config.mount.is_empty() {
        return Err("mount is required (\"/static\", or \"/\" for everything)".into());
    }
    Ok(boxed(static_layer(config, base)?))
}

/// The static files of a route: a miss is 404, other methods 405.
pub(super) fn static_terminal(
    config: &StaticConfig,
    base: &Path,
) -> Result<GatewayService, String> {
    Ok(static_layer(config, base)?.terminal().boxed_clone())
}

fn static_layer(config: &StaticConfig, base: &Path) -> Result<StaticFilesLayer, String> {
    let mut layer = StaticFilesLayer::new(&config.mount, &base.join(&config.dir))
        .map_err(|e| e.to_string())?
        .fallthrough(config.fallthrough)
        .precompressed(config.precompressed)
        .cache_size(config.cache_size.0)
        .cache_max_file(config.cache_max_file.0)
        .compress(config.compress);
    if let Some(cache_control) = &config.cache_control {
        layer = layer
            .cache_control(cache_control)
            .map_err(|e| e.to_string())?;
    }
    Ok(layer)
}

fn header_ops(rules: &HeaderRules, direction: &str) -> Result<Vec<HeaderOp>, String> {
    let mut ops = Vec::new();
    for (name, value) in &rules.set {
        ops.push(HeaderOp::set(name, value).map_err(|e| format!("{direction}.set: {e}"))?);
    }
    for (name, value) in &rules.append {
        ops.push(HeaderOp::append(name, value).map_err(|e| format!("{direction}.append: {e}"))?);
    }
    for name in &rules.remove {
        ops.push(HeaderOp::remove(name).map_err(|e| format!("{direction}.remove: {e}"))?);
    }
    Ok(ops)
}

/// Build the headers layer.
pub(super) fn headers(config: &HeadersConfig) -> Result<NativeLayer, String> {
    let mut layer = HeadersLayer::new();
    for op in header_ops(&config.request, "request")? {
        layer = layer.request(op);
    }
    for op in header_ops(&config.response, "response")? {
        layer = layer.response(op);
    }
    Ok(boxed(layer))
}
