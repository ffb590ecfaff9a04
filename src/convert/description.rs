//! What `walker.py` returns: a PasteDeploy stack as PasteDeploy resolved it, as plain
//! data (the JSON is read into these types).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

/// One `.ini` file and name, resolved.
#[derive(Debug, Deserialize)]
pub struct Description {
    /// The `.ini` file (absolute).
    pub file: PathBuf,
    /// The app, pipeline or composite converted.
    pub name: String,
    /// Its loader context, walked.
    pub root: Node,
    /// `[server:main]`, if the file has one.
    pub server: Option<ServerSection>,
    /// The `[loggers]` sections, if any.
    pub logging: Option<Logging>,
}

/// One loader context: what PasteDeploy would build for a name.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Node {
    /// `APP` (an app or a composite).
    App(Leaf),
    /// `FILTER`.
    Filter(Leaf),
    /// `[pipeline:NAME]`: filters, outermost first, then an app.
    Pipeline {
        /// Where it was read.
        #[serde(flatten)]
        origin: Origins,
        /// Outermost first.
        filters: Vec<Node>,
        /// The last name of the pipeline.
        app: Box<Node>,
    },
    /// `[filter-app:NAME]`: a filter around `next`.
    FilterApp {
        /// Where it was read.
        #[serde(flatten)]
        origin: Origins,
        /// The filter the section defines.
        filter: Box<Node>,
        /// What it wraps.
        next: Box<Node>,
    },
    /// `filter-with = NAME` in an app or filter section: `filter` around `next`.
    FilteredWith {
        /// Where it was read.
        #[serde(flatten)]
        origin: Origins,
        /// The filter named by `filter-with`.
        filter: Box<Node>,
        /// The section's own app or filter.
        next: Box<Node>,
    },
}

impl Node {
    /// Where this node was read.
    pub fn origins(&self) -> &Origins {
        match self {
            Node::App(leaf) | Node::Filter(leaf) => &leaf.origin,
            Node::Pipeline { origin, .. }
            | Node::FilterApp { origin, .. }
            | Node::FilteredWith { origin, .. } => origin,
        }
    }
}

/// The sections a node was read from.
#[derive(Debug, Deserialize, Clone)]
pub struct Origins {
    /// Outermost first: `[app:main]` then the `[app:other]` its `use = other` named.
    pub origin: Vec<Origin>,
    /// True when `file#name` of the first origin loads exactly this node (false for the
    /// app inside a `filter-with`, or the filter of a `[filter-app:...]`).
    pub own_origin: bool,
    /// `global_conf` keys that differ when that `file#name` is loaded alone (as
    /// `paste = "file#name"` does) rather than reached from the converted file.
    pub standalone: Vec<String>,
}

impl Origins {
    /// The first (outermost) section.
    pub fn first(&self) -> Option<&Origin> {
        self.origin.first()
    }
}

/// One section of one file.
#[derive(Debug, Deserialize, Clone)]
pub struct Origin {
    /// The file (absolute).
    pub file: PathBuf,
    /// `app:visits`, `filter:gzip`, ...
    pub section: String,
    /// The name it was looked up by (`visits`).
    pub name: String,
    /// Its `use = ...`, as written.
    #[serde(rename = "use")]
    pub use_: Option<String>,
}

/// An app or filter with a factory.
#[derive(Debug, Deserialize)]
pub struct Leaf {
    /// Where it was read.
    #[serde(flatten)]
    pub origin: Origins,
    /// `paste.app_factory`, `paste.composite_factory`, `paste.filter_factory`,
    /// `paste.filter_app_factory`, ...
    pub protocol: Option<String>,
    /// `module:attr` of the factory.
    pub factory: String,
    /// The distribution of an `egg:` entry point.
    pub distribution: Option<String>,
    /// The entry point's name.
    pub entry_point: Option<String>,
    /// The options PasteDeploy passes as keyword arguments.
    pub local_conf: BTreeMap<String, String>,
    /// The `global_conf` dict PasteDeploy passes.
    pub global_conf: BTreeMap<String, String>,
    /// The mounts, for `paste.urlmap`.
    pub urlmap: Option<UrlMap>,
}

/// A Paste urlmap, in the order `URLMap` tries its mounts.
#[derive(Debug, Deserialize)]
pub struct UrlMap {
    /// Longest prefix first, domains before the rest, as `URLMap.sort_apps` orders them.
    pub mounts: Vec<Mount>,
    /// `not_found_app`, if set.
    pub not_found: Option<Box<Node>>,
}

/// One mount of a urlmap.
#[derive(Debug, Deserialize)]
pub struct Mount {
    /// The key as written (`domain example.com /admin`).
    pub key: String,
    /// `example.com` or `example.com:8080`.
    pub domain: Option<String>,
    /// The normalized prefix, `""` for the root.
    pub path: String,
    /// What is mounted.
    pub app: Node,
}

/// `[server:main]`.
#[derive(Debug, Deserialize)]
pub struct ServerSection {
    /// The section name.
    pub section: String,
    /// Its options, interpolated (with `use`).
    pub options: BTreeMap<String, String>,
}

/// The `[loggers]` configuration, reduced to where each logger writes.
#[derive(Debug, Deserialize)]
pub struct Logging {
    /// By qualified name (`root` for the root logger).
    pub loggers: BTreeMap<String, Logger>,
}

/// One `[logger_...]` section.
#[derive(Debug, Deserialize)]
pub struct Logger {
    /// `stdout`, `stderr`, `file:PATH` or `other:CLASS`, one per handler.
    pub outputs: Vec<String>,
    /// Whether records go on to the parent logger.
    pub propagate: bool,
    /// The level set.
    pub level: String,
}

impl Logging {
    /// Where records of `name` end up: its handlers, else its nearest ancestor's that
    /// it propagates to, as the logging module looks them up.
    pub fn outputs_of(&self, name: &str) -> Vec<String> {
        let mut current = name.to_owned();
        loop {
            if let Some(logger) = self.loggers.get(&current) {
                if !logger.outputs.is_empty() {
                    return logger.outputs.clone();
                }
                if !logger.propagate {
                    return Vec::new();
                }
            }
            match current.rsplit_once('.') {
                Some((parent, _)) => current = parent.to_owned(),
                None if current != "root" => current = "root".to_owned(),
                None => return Vec::new(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logger(outputs: &[&str], propagate: bool) -> Logger {
        Logger {
            outputs: outputs.iter().map(|s| s.to_string()).collect(),
            propagate,
            level: "INFO".into(),
        }
    }

    #[test]
    fn a_logger_writes_where_logging_would_send_its_records() {
        let logging = Logging {
            loggers: [
                ("root".to_owned(), logger(&["stderr"], true)),
                ("access".to_owned(), logger(&["stdout"], false)),
                ("app".to_owned(), logger(&[], true)),
                ("quiet".to_owned(), logger(&[], false)),
            ]
            .into(),
        };
        assert_eq!(logging.outputs_of("access"), ["stdout"]);
        assert_eq!(logging.outputs_of("access.sub"), ["stdout"]);
        assert_eq!(logging.outputs_of("app"), ["stderr"], "propagates to root");
        assert_eq!(logging.outputs_of("wsgi"), ["stderr"], "unknown: root");
        assert!(
            logging.outputs_of("quiet").is_empty(),
            "no handler, no propagation"
        );
    }
}
