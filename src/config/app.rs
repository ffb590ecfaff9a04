//! `[app]`: which WSGI application to serve and where Python finds it.

use figment::value::magic::RelativePathBuf;
use serde::{Deserialize, Serialize};

use super::app_spec::{AppSpec, PasteSpec};

/// The WSGI application and its Python environment.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AppConfig {
    /// The application as `"module:callable"` (gunicorn's syntax). The callable may be an
    /// expression on the module such as `"myapp:create_app()"`.
    pub wsgi: Option<AppSpec>,
    /// Instead of `wsgi`: a PasteDeploy stack, `"production.ini"` or
    /// `"production.ini#main"` (relative to the config file), loaded with
    /// `paste.deploy.loadapp`; its `[loggers]` sections configure Python logging.
    pub paste: Option<RelativePathBuf>,
    /// Extra entries put in front of `sys.path`, relative to the config file's folder.
    /// With no config file the current directory is used, as gunicorn does.
    pub python_path: Vec<RelativePathBuf>,
    /// The virtualenv whose site-packages the application imports from, relative to the
    /// config file's folder. Default: `$VIRTUAL_ENV`, else the interpreter the gateway was
    /// built against.
    pub virtualenv: Option<RelativePathBuf>,
    /// The folder the worker changes to before importing the app, for apps that open
    /// relative paths (gunicorn's `--chdir`). Unset: the gateway's own working folder.
    /// With no `python_path`, this folder is the one put on `sys.path`.
    pub chdir: Option<RelativePathBuf>,
    /// The mount prefix the application is served under (`SCRIPT_NAME`), e.g. `"/api"`.
    /// Requests outside it get 404.
    pub script_name: String,
}

impl AppConfig {
    /// `paste` split into its file (resolved against the config file) and app name.
    pub fn paste_spec(&self) -> Option<PasteSpec> {
        self.paste
            .as_ref()
            .map(|paste| PasteSpec::split(&paste.relative()))
    }
}
