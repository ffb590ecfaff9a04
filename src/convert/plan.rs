//! The converted configuration before it is written: gateway entries, each with the
//! comment lines that go above it.

use std::collections::BTreeMap;

/// Everything `write` turns into gateway.toml.
#[derive(Debug, Default)]
pub(super) struct Plan {
    /// Lines of the comment at the top of the file.
    pub header: Vec<String>,
    /// `[server]`, from `[server:main]`.
    pub server: Option<ServerPlan>,
    /// `[app] python_path`.
    pub python_path: Vec<String>,
    /// `[app]`'s application, when the stack has a default app.
    pub default_app: Option<AppEntry>,
    /// `[apps.NAME]`, in the order first used.
    pub apps: Vec<AppEntry>,
    /// `[upstream.NAME]`.
    pub upstreams: Vec<Upstream>,
    /// `[[middleware]]`, outermost first.
    pub middleware: Vec<Layer>,
    /// `[[route]]`, in the order they are tried.
    pub routes: Vec<Route>,
}

/// What the comments say: where an entry came from, and what differs.
#[derive(Debug, Default, Clone)]
pub(super) struct Comments(pub Vec<String>);

impl Comments {
    /// One line.
    pub(super) fn line(text: impl Into<String>) -> Self {
        Self(vec![text.into()])
    }

    /// Add a line.
    pub(super) fn push(&mut self, text: impl Into<String>) {
        self.0.push(text.into());
    }
}

/// `[server]`.
#[derive(Debug, Default)]
pub(super) struct ServerPlan {
    /// Above the table.
    pub comments: Comments,
    /// `bind`.
    pub bind: Vec<String>,
    /// `threads`.
    pub threads: Option<i64>,
    /// `workers`.
    pub workers: Option<i64>,
}

/// An application loaded by PasteDeploy: `paste = "file.ini#name"`.
#[derive(Debug, Clone)]
pub(super) struct AppEntry {
    /// Above the table.
    pub comments: Comments,
    /// The key under `[apps]` (unused for `[app]`).
    pub name: String,
    /// `file.ini#name`, the file relative to the output's folder.
    pub paste: String,
}

/// `[upstream.NAME]`.
#[derive(Debug)]
pub(super) struct Upstream {
    /// Above the table.
    pub comments: Comments,
    /// The key under `[upstream]`.
    pub name: String,
    /// `host:port` or `https://host:port`.
    pub servers: Vec<String>,
}

/// One `[[middleware]]` or `[[route.middleware]]` entry.
#[derive(Debug, Clone)]
pub(super) struct Layer {
    /// Above the entry.
    pub comments: Comments,
    /// What it is.
    pub kind: LayerKind,
}

/// The entry kinds the converter writes.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum LayerKind {
    /// `kind = "access_log"`.
    AccessLog {
        /// `format`.
        format: String,
        /// `output`.
        output: String,
    },
    /// `kind = "compression"`, gzip only.
    Compression {
        /// `gzip_level`.
        gzip_level: u32,
    },
    /// `kind = "auth"`, Basic against an htpasswd file.
    Auth {
        /// `realm`.
        realm: String,
        /// `htpasswd`, relative to the output's folder.
        htpasswd: String,
    },
    /// `kind = "headers"` removing request headers.
    RemoveRequestHeaders(Vec<String>),
    /// `kind = "python"`.
    Python {
        /// Which factory key.
        protocol: PythonProtocol,
        /// `module:callable`.
        factory: String,
        /// `options`.
        options: BTreeMap<String, String>,
        /// `global_conf`.
        global_conf: BTreeMap<String, String>,
    },
}

impl LayerKind {
    /// True for `kind = "python"`.
    pub(super) fn is_python(&self) -> bool {
        matches!(self, LayerKind::Python { .. })
    }
}

/// The factory keys of a python entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PythonProtocol {
    /// `filter_factory`.
    FilterFactory,
    /// `filter_app_factory`.
    FilterAppFactory,
}

impl PythonProtocol {
    /// The key it is written as.
    pub(super) fn key(self) -> &'static str {
        match self {
            PythonProtocol::FilterFactory => "filter_factory",
            PythonProtocol::FilterAppFactory => "filter_app_factory",
        }
    }
}

/// One `[[route]]`.
#[derive(Debug)]
pub(super) struct Route {
    /// Above the entry.
    pub comments: Comments,
    /// `host` (empty: any).
    pub host: Vec<String>,
    /// `path` (None: any).
    pub path: Option<String>,
    /// `methods` (None: any).
    pub methods: Option<Vec<String>>,
    /// The action.
    pub action: Action,
    /// `[[route.middleware]]`, outermost first.
    pub middleware: Vec<Layer>,
}

/// A route's action.
#[derive(Debug, Clone)]
pub(super) enum Action {
    /// `app = "NAME"`.
    App(String),
    /// `static = { dir, cache_control }`.
    Static {
        /// `dir`, relative to the output's folder.
        dir: String,
        /// `cache_control`.
        cache_control: Option<String>,
    },
    /// `proxy = "NAME"` (an `[upstream.NAME]`).
    Proxy(String),
    /// `respond = { status, body }`.
    Respond {
        /// `status`.
        status: u16,
        /// `body`.
        body: String,
    },
}
