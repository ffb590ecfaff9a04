//! Filters: Paste's TransLogger, gzipper and Basic auth become native layers where the
//! native layer does what they did; every other filter becomes a `python` entry that
//! the gateway calls exactly as PasteDeploy would (same factory, options and
//! `global_conf`).

use std::collections::BTreeMap;
use std::path::Path;

use super::context::{asbool, Context};
use super::description::Leaf;
use super::plan::{Comments, Layer, LayerKind, PythonProtocol};

/// `egg:Paste#translogger`.
const TRANSLOGGER: &str = "paste.translogger:make_filter";
/// `egg:Paste#gzip`.
const GZIP: &str = "paste.gzipper:make_gzip_middleware";
/// `egg:Paste#auth_basic`.
const AUTH_BASIC: &str = "paste.auth.basic:make_basic";

/// The layer for one filter section, with its comments.
pub(super) fn filter_layer(leaf: &Leaf, ctx: &mut Context<'_>) -> Layer {
    let mut comments = Comments::line(ctx.provenance(&leaf.origin));
    let native = match leaf.factory.as_str() {
        TRANSLOGGER => translogger(leaf, ctx, &mut comments),
        GZIP => gzip(leaf, &mut comments),
        AUTH_BASIC => auth_basic(leaf, ctx, &mut comments),
        other => Err(format!(
            "{other} has no native equivalent; it runs in Python"
        )),
    };
    let kind = match native {
        Ok(kind) => kind,
        Err(reason) => {
            let line = ctx.not_native(&leaf.origin, &reason);
            comments.push(line);
            python(leaf, ctx)
        }
    };
    Layer { comments, kind }
}

/// The filter as PasteDeploy calls it: its factory, its options, its `global_conf`.
pub(super) fn python(leaf: &Leaf, ctx: &Context<'_>) -> LayerKind {
    let protocol = match leaf.protocol.as_deref() {
        Some("paste.filter_app_factory") => PythonProtocol::FilterAppFactory,
        _ => PythonProtocol::FilterFactory,
    };
    LayerKind::Python {
        protocol,
        factory: leaf.factory.clone(),
        options: leaf.local_conf.clone(),
        global_conf: global_conf(&leaf.global_conf, ctx),
    }
}

/// `global_conf` with `here` and `__file__` relative to the output's folder (the
/// gateway resolves them against its config file), so the output can move with the
/// `.ini`.
pub(super) fn global_conf(
    conf: &BTreeMap<String, String>,
    ctx: &Context<'_>,
) -> BTreeMap<String, String> {
    let mut conf = conf.clone();
    for key in ["here", "__file__"] {
        if let Some(path) = conf.get_mut(key) {
            *path = ctx.relative(Path::new(path.as_str()));
        }
    }
    conf
}

/// TransLogger -> `access_log` in the combined format it writes, to where its logger
/// wrote.
fn translogger(
    leaf: &Leaf,
    ctx: &mut Context<'_>,
    comments: &mut Comments,
) -> Result<LayerKind, String> {
    let conf = &leaf.local_conf;
    if conf.get("format").is_some_and(|f| !f.is_empty()) {
        return Err("TransLogger with its own `format`: no native equivalent".into());
    }
    let logger_name = conf.get("logger_name").map_or("wsgi", String::as_str);
    let console = conf
        .get("setup_console_handler")
        .map_or(Some(true), |v| asbool(v))
        .ok_or("setup_console_handler is not a boolean")?;
    let output = if console {
        // TransLogger adds a StreamHandler (stderr) to its logger and stops propagation.
        "stderr".to_owned()
    } else {
        let outputs = ctx
            .logging
            .map(|logging| logging.outputs_of(logger_name))
            .unwrap_or_default();
        match outputs.first().map(String::as_str) {
            Some("stdout") => "stdout".to_owned(),
            Some("stderr") => "stderr".to_owned(),
            Some(file) if file.starts_with("file:") => ctx.relative(Path::new(&file[5..])),
            Some(other) => {
                comments.push(format!(
                    "NOTE: logger {logger_name:?} wrote through {other}; this log goes to stdout"
                ));
                "stdout".to_owned()
            }
            None => {
                comments.push(format!(
                    "NOTE: no handler in [loggers] took logger {logger_name:?}, so TransLogger's \
                     lines were dropped; this log writes them to stdout"
                ));
                "stdout".to_owned()
            }
        }
    };
    if outputs_more_than_one(ctx, logger_name, console) {
        comments.push(format!(
            "NOTE: logger {logger_name:?} had several handlers; this log writes to the first"
        ));
    }
    for key in ["logging_level", "set_logger_level"] {
        if conf.contains_key(key) {
            comments.push(format!(
                "NOTE: {key} has no native equivalent: every response is logged"
            ));
        }
    }
    comments.push(
        "NOTE: the native log takes the client address from the connection (or from \
         Forwarded headers of server.forwarded_allow_ips peers); TransLogger believed any \
         X-Forwarded-For",
    );
    Ok(LayerKind::AccessLog {
        format: "combined".into(),
        output,
    })
}

fn outputs_more_than_one(ctx: &Context<'_>, logger_name: &str, console: bool) -> bool {
    !console
        && ctx
            .logging
            .is_some_and(|logging| logging.outputs_of(logger_name).len() > 1)
}

/// gzipper -> `compression`, gzip only, at the same level, on bodies of any size.
fn gzip(leaf: &Leaf, comments: &mut Comments) -> Result<LayerKind, String> {
    let level = leaf
        .local_conf
        .get("compress_level")
        .map_or("6", String::as_str);
    let level: u32 = level
        .trim()
        .parse()
        .map_err(|_| format!("compress_level {level:?} is not a number"))?;
    if !(1..=9).contains(&level) {
        return Err(format!("compress_level {level} is outside 1-9"));
    }
    comments.push(
        "NOTE: gzipper compressed every text/* and application/* body; the native layer \
         also leaves alone already-compressed types (zip, pdf, octet-stream), responses with \
         Content-Range (Paste's FileApp sends one with every file) and Cache-Control: \
         no-transform, gives HEAD the Content-Encoding its GET gets, and adds Vary: \
         Accept-Encoding",
    );
    Ok(LayerKind::Compression { gzip_level: level })
}

/// Basic auth -> `auth` when the section names the htpasswd file its `authfunc` checks.
fn auth_basic(
    leaf: &Leaf,
    ctx: &mut Context<'_>,
    comments: &mut Comments,
) -> Result<LayerKind, String> {
    let conf = &leaf.local_conf;
    let realm = conf.get("realm").cloned().unwrap_or_default();
    let Some(htpasswd) = conf.get("htpasswd") else {
        return Err(format!(
            "auth_basic asks the Python function authfunc = {}; to make it native, put the \
             users in an htpasswd file (bcrypt or SHA-512-crypt), add `htpasswd = FILE` to \
             the section (Paste ignores the key) and convert again",
            conf.get("authfunc").map_or("?", String::as_str)
        ));
    };
    comments.push(format!(
        "NOTE: the htpasswd file decides; authfunc = {} is not called. The 401 challenge adds \
         charset=\"UTF-8\" (RFC 7617) and its body is the gateway's plain one",
        conf.get("authfunc").map_or("?", String::as_str)
    ));
    // A relative file is the .ini's, as `%(here)s/htpasswd` would be.
    let here = leaf
        .global_conf
        .get("here")
        .map_or_else(|| ctx.cwd.clone(), std::path::PathBuf::from);
    Ok(LayerKind::Auth {
        realm,
        htpasswd: ctx.relative(&here.join(htpasswd)),
    })
}
