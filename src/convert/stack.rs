//! The shape of the stack: pipelines, `filter-app` and `filter-with` flattened into
//! a list of filters above one app; a Paste urlmap becomes routes (in the order
//! `URLMap` tries its mounts); Paste's static and proxy apps become native actions;
//! every other app is loaded by PasteDeploy itself (`paste = "file.ini#name"`).
//!
//! Where the layers go: above a urlmap, native layers up to the first Python filter
//! stay global (`[[middleware]]`); that filter and everything below it is repeated in
//! each route (a Python entry cannot wrap routes). Below a mount, a route's own filters
//! follow in its `[[route.middleware]]`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use super::context::Context;
use super::description::{Leaf, Node, Origins, UrlMap};
use super::layers::filter_layer;
use super::plan::{Action, AppEntry, Comments, Layer, LayerKind, Plan, Route, Upstream};
use super::ConvertError;

/// `egg:Paste#static`.
const STATIC: &str = "paste.urlparser:make_static";
/// `egg:Paste#proxy`.
const PROXY: &str = "paste.proxy:make_proxy";

/// A node at app position, flattened: the filters above its app, outermost first.
struct Chain<'a> {
    /// Every filter between the node and its app.
    filters: Vec<&'a Leaf>,
    /// The app (or composite) at the bottom.
    leaf: &'a Leaf,
    /// The innermost node that `paste = "file#name"` loads as it is.
    anchor: &'a Origins,
    /// How many of `filters` are above `anchor` (the rest are inside it).
    above_anchor: usize,
}

/// Flatten pipelines, `filter-app` and `filter-with` down to the app.
fn flatten(node: &Node) -> Result<Chain<'_>, ConvertError> {
    let mut filters = Vec::new();
    let mut anchor = (node.origins(), 0);
    let mut current = node;
    loop {
        if current.origins().own_origin {
            anchor = (current.origins(), filters.len());
        }
        match current {
            Node::App(leaf) => {
                return Ok(Chain {
                    filters,
                    leaf,
                    anchor: anchor.0,
                    above_anchor: anchor.1,
                })
            }
            Node::Pipeline {
                filters: names,
                app,
                ..
            } => {
                for filter in names {
                    push_filters(filter, &mut filters)?;
                }
                current = app;
            }
            Node::FilterApp { filter, next, .. } | Node::FilteredWith { filter, next, .. } => {
                push_filters(filter, &mut filters)?;
                current = next;
            }
            Node::Filter(leaf) => {
                return Err(ConvertError::Unsupported(format!(
                    "{}: a filter where an app is expected",
                    leaf.origin
                        .first()
                        .map_or("?".into(), |o| format!("[{}]", o.section))
                )))
            }
        }
    }
}

/// A node at filter position: a filter, or a filter with `filter-with` (outermost
/// first, as `FILTER_WITH` composes them).
fn push_filters<'a>(node: &'a Node, out: &mut Vec<&'a Leaf>) -> Result<(), ConvertError> {
    match node {
        Node::Filter(leaf) => {
            out.push(leaf);
            Ok(())
        }
        Node::FilteredWith { filter, next, .. } => {
            push_filters(filter, out)?;
            push_filters(next, out)
        }
        other => Err(ConvertError::Unsupported(format!(
            "{}: an app where a filter is expected",
            other
                .origins()
                .first()
                .map_or("?".into(), |o| format!("[{}]", o.section))
        ))),
    }
}

/// What the bottom of a chain becomes.
enum Terminal<'a> {
    /// Routes.
    UrlMap(&'a UrlMap),
    /// Files: `static = { dir, cache_control }`.
    Static {
        dir: String,
        cache_control: Option<String>,
    },
    /// An upstream.
    Proxy(ProxyTarget),
    /// An app loaded by PasteDeploy.
    Paste,
}

/// `egg:Paste#proxy`, read.
struct ProxyTarget {
    servers: Vec<String>,
    methods: Option<Vec<String>>,
    suppress: Vec<String>,
    notes: Vec<String>,
}

/// Builds the plan's apps, routes and layers.
pub(super) struct Builder<'c, 'a> {
    ctx: &'c mut Context<'a>,
    /// What is built.
    pub plan: Plan,
    /// `(file, name)` -> the `[apps.NAME]` key.
    apps: BTreeMap<(PathBuf, String), String>,
    /// Keys taken under `[apps]` and `[upstream]`.
    taken: BTreeSet<String>,
}

impl<'c, 'a> Builder<'c, 'a> {
    /// An empty plan.
    pub(super) fn new(ctx: &'c mut Context<'a>) -> Self {
        Self {
            ctx,
            plan: Plan::default(),
            apps: BTreeMap::new(),
            taken: BTreeSet::new(),
        }
    }

    /// The converted name: global layers, then `[app]` or routes.
    pub(super) fn root(&mut self, node: &Node) -> Result<(), ConvertError> {
        let chain = flatten(node)?;
        match self.terminal(chain.leaf) {
            Terminal::Paste => {
                self.plan.middleware = self.layers(&chain.filters[..chain.above_anchor]);
                let inside = &chain.filters[chain.above_anchor..];
                self.plan.default_app = Some(self.app_entry(chain.anchor, inside, None));
            }
            Terminal::Static { .. } if self.has_python(&chain.filters) => {
                // A Python filter needs an app below it: PasteDeploy serves the files.
                self.plan.middleware = self.layers(&chain.filters[..chain.above_anchor]);
                let note = self.ctx.not_native(
                    &chain.leaf.origin,
                    "Paste's static app stays in Python: a Python filter is above it",
                );
                let inside = &chain.filters[chain.above_anchor..];
                self.plan.default_app = Some(self.app_entry(chain.anchor, inside, Some(&note)));
            }
            terminal => {
                let layers = self.layers(&chain.filters);
                let split = layers
                    .iter()
                    .position(|layer| layer.kind.is_python())
                    .unwrap_or(layers.len());
                let (global, per_route) = layers.split_at(split);
                self.plan.middleware = global.to_vec();
                let mut per_route = per_route.to_vec();
                match terminal {
                    Terminal::UrlMap(map) => {
                        for layer in &mut per_route {
                            layer.comments.push(
                                "NOTE: repeated in every route: under Paste this filter wrapped \
                                 the whole urlmap (one instance; it saw the full path and the \
                                 requests no mount took); here each route has its own, below \
                                 the routing",
                            );
                        }
                        let comment = self.ctx.provenance(&chain.leaf.origin);
                        self.plan.header.push(format!(
                            "The urlmap {} became the [[route]]s below, in the order Paste's \
                             URLMap tries them (domains first, then the longest prefix).",
                            comment.trim_start_matches("from ")
                        ));
                        if !covers_everything(map) {
                            self.plan.header.push(
                                "A request no mount takes gets the gateway's plain 404 (URLMap \
                                 answered with its HTML 404 page)."
                                    .into(),
                            );
                        }
                        self.mount_routes(map, &chain.leaf.origin, None, "", &per_route)?;
                    }
                    terminal => {
                        let routes = self.route(
                            &chain,
                            terminal,
                            None,
                            String::new(),
                            per_route,
                            Comments::default(),
                        );
                        self.plan.routes.extend(routes);
                    }
                }
            }
        }
        Ok(())
    }

    /// The routes of a urlmap (read from `origins`) mounted at `base` (`""`: the root)
    /// on `host`.
    fn mount_routes(
        &mut self,
        map: &UrlMap,
        origins: &Origins,
        host: Option<&str>,
        base: &str,
        inherited: &[Layer],
    ) -> Result<(), ConvertError> {
        for mount in &map.mounts {
            let host = mount.domain.as_deref().or(host);
            let path = format!("{base}{}", mount.path);
            let target = self.ctx.provenance(mount.app.origins());
            let comments = Comments::line(format!(
                "urlmap mount `{}` -> {}",
                mount.key.trim(),
                target.trim_start_matches("from ")
            ));
            self.target_routes(&mount.app, host, path, inherited, comments)?;
        }
        if let Some(not_found) = &map.not_found {
            let target = self.ctx.provenance(not_found.origins());
            let comments = Comments::line(format!(
                "urlmap not_found_app -> {}: what no mount takes",
                target.trim_start_matches("from ")
            ));
            self.target_routes(not_found, host, base.to_owned(), inherited, comments)?;
        } else if (host.is_some() || !base.is_empty()) && !covers_everything(map) {
            // A nested urlmap answers 404 for what none of its mounts takes, and the
            // request must not fall through to the routes after it.
            let mut middleware: Vec<Layer> = inherited
                .iter()
                .filter(|layer| !layer.kind.is_python())
                .cloned()
                .collect();
            middleware.iter_mut().for_each(|layer| {
                layer.comments.0.truncate(1);
            });
            let mut comments = Comments::line(format!(
                "what the urlmap {} takes but none of its mounts does: 404, as URLMap \
                 answered (its HTML page becomes a plain one)",
                self.ctx.provenance(origins).trim_start_matches("from ")
            ));
            if middleware.len() < inherited.len() {
                comments.push("NOTE: the Python filters above did see these 404s under Paste");
            }
            self.plan.routes.push(Route {
                comments,
                host: host.map(host_patterns).unwrap_or_default(),
                path: route_path(host, base),
                methods: None,
                action: Action::Respond {
                    status: 404,
                    body: "Not Found".into(),
                },
                middleware,
            });
        }
        Ok(())
    }

    /// The route(s) of what one mount names.
    fn target_routes(
        &mut self,
        node: &Node,
        host: Option<&str>,
        path: String,
        inherited: &[Layer],
        comments: Comments,
    ) -> Result<(), ConvertError> {
        let chain = flatten(node)?;
        let terminal = self.terminal(chain.leaf);
        let own_python = self.has_python(&chain.filters);
        let mut note = None;
        let terminal = match terminal {
            Terminal::UrlMap(inner) => {
                let mut layers = inherited.to_vec();
                layers.extend(self.layers(&chain.filters));
                return self.mount_routes(inner, &chain.leaf.origin, host, &path, &layers);
            }
            Terminal::Static { .. }
                if own_python || inherited.iter().any(|l| l.kind.is_python()) =>
            {
                note = Some(self.ctx.not_native(
                    &chain.leaf.origin,
                    "Paste's static app stays in Python: a Python filter is above it",
                ));
                Terminal::Paste
            }
            terminal => terminal,
        };
        let mut layers = inherited.to_vec();
        let route = match terminal {
            Terminal::Paste => {
                layers.extend(self.layers(&chain.filters[..chain.above_anchor]));
                let name = self.app_name(&chain, note.as_deref());
                Route {
                    comments,
                    host: host.map(host_patterns).unwrap_or_default(),
                    path: route_path(host, &path),
                    methods: None,
                    action: Action::App(name),
                    middleware: layers,
                }
            }
            terminal => {
                layers.extend(self.layers(&chain.filters));
                let routes = self.route(&chain, terminal, host, path, layers, comments);
                self.plan.routes.extend(routes);
                return Ok(());
            }
        };
        self.plan.routes.push(route);
        Ok(())
    }

    /// The route to a native terminal (static files or an upstream), and for a proxy
    /// that allows only some methods, the 400 route for the others.
    fn route(
        &mut self,
        chain: &Chain<'_>,
        terminal: Terminal<'_>,
        host: Option<&str>,
        path: String,
        mut middleware: Vec<Layer>,
        mut comments: Comments,
    ) -> Vec<Route> {
        let mut refused = None;
        if comments.0.is_empty() {
            comments.push(self.ctx.provenance(&chain.leaf.origin));
        }
        let mut methods = None;
        let action = match terminal {
            Terminal::Static { dir, cache_control } => {
                comments.push(
                    "NOTE: Paste's StaticURLParser, now the native static files: the same \
                     files, index.html and 301 to `dir/`; Paste also sent Expires with \
                     cache_max_age, its 404 page differs, and the native files add ETag, \
                     ranges and precompressed siblings",
                );
                Action::Static { dir, cache_control }
            }
            Terminal::Proxy(target) => {
                let wanted = chain
                    .leaf
                    .origin
                    .first()
                    .map_or("proxy", |o| o.name.as_str());
                let name = self.unique(wanted);
                for note in &target.notes {
                    let line = self.ctx.differs(&chain.leaf.origin, note);
                    comments.push(line);
                }
                if !target.suppress.is_empty() {
                    middleware.push(Layer {
                        comments: Comments::line(
                            "suppress_http_headers of the proxy: removed before the upstream",
                        ),
                        kind: LayerKind::RemoveRequestHeaders(target.suppress.clone()),
                    });
                }
                if let Some(list) = target.methods {
                    methods = Some(list);
                    refused = Some(Route {
                        comments: Comments::line(
                            "the methods allowed_request_methods leaves out: 400, as Paste's \
                             proxy answered them",
                        ),
                        host: host.map(host_patterns).unwrap_or_default(),
                        path: route_path(host, &path),
                        methods: None,
                        action: Action::Respond {
                            status: 400,
                            body: "Disallowed".into(),
                        },
                        // A fixed answer has no app for a Python layer to wrap.
                        middleware: middleware
                            .iter()
                            .filter(|layer| !layer.kind.is_python())
                            .cloned()
                            .collect(),
                    });
                }
                self.plan.upstreams.push(Upstream {
                    comments: Comments::line(self.ctx.provenance(&chain.leaf.origin)),
                    name: name.clone(),
                    servers: target.servers,
                });
                Action::Proxy(name)
            }
            Terminal::UrlMap(_) | Terminal::Paste => unreachable!("not a native terminal"),
        };
        let route = Route {
            comments,
            host: host.map(host_patterns).unwrap_or_default(),
            path: route_path(host, &path),
            methods,
            action,
            middleware,
        };
        std::iter::once(route).chain(refused).collect()
    }

    /// Classify the app at the bottom of a chain.
    fn terminal<'l>(&mut self, leaf: &'l Leaf) -> Terminal<'l> {
        if let Some(map) = &leaf.urlmap {
            return Terminal::UrlMap(map);
        }
        match leaf.factory.as_str() {
            STATIC => match self.static_dir(leaf) {
                Some((dir, cache_control)) => Terminal::Static { dir, cache_control },
                None => Terminal::Paste,
            },
            PROXY => match proxy_target(leaf) {
                Ok(target) => Terminal::Proxy(target),
                Err(reason) => {
                    self.ctx.not_native(&leaf.origin, &reason);
                    Terminal::Paste
                }
            },
            _ => Terminal::Paste,
        }
    }

    /// `document_root` and `cache_max_age` of Paste's static app.
    fn static_dir(&mut self, leaf: &Leaf) -> Option<(String, Option<String>)> {
        let conf = &leaf.local_conf;
        let root = conf.get("document_root")?;
        let cache_control = match conf.get("cache_max_age") {
            Some(age) => match age.trim().parse::<u64>() {
                // FileApp.cache_control(max_age=N) writes "public, max-age=N".
                Ok(age) => Some(format!("public, max-age={age}")),
                Err(_) => {
                    self.ctx
                        .not_native(&leaf.origin, "cache_max_age is not a number");
                    return None;
                }
            },
            None => None,
        };
        // StaticURLParser resolves a relative root against the working folder.
        Some((self.ctx.relative(std::path::Path::new(root)), cache_control))
    }

    /// The layers for `filters`, outermost first.
    fn layers(&mut self, filters: &[&Leaf]) -> Vec<Layer> {
        filters
            .iter()
            .map(|leaf| filter_layer(leaf, self.ctx))
            .collect()
    }

    /// True when some filter stays in Python (mapping twice records each note once).
    fn has_python(&mut self, filters: &[&Leaf]) -> bool {
        self.layers(filters)
            .iter()
            .any(|layer| layer.kind.is_python())
    }

    /// The `[apps.NAME]` of the chain's anchor.
    fn app_name(&mut self, chain: &Chain<'_>, note: Option<&str>) -> String {
        let key = chain
            .anchor
            .first()
            .map(|o| (o.file.clone(), o.name.clone()))
            .unwrap_or_default();
        if let Some(name) = self.apps.get(&key) {
            return name.clone();
        }
        let mut entry = self.app_entry(chain.anchor, &chain.filters[chain.above_anchor..], note);
        entry.name = self.unique(&key.1);
        self.apps.insert(key, entry.name.clone());
        let name = entry.name.clone();
        self.plan.apps.push(entry);
        name
    }

    /// `paste = "file#name"` for the node `origins` describes.
    fn app_entry(&mut self, origins: &Origins, inside: &[&Leaf], note: Option<&str>) -> AppEntry {
        let first = origins.first().cloned();
        let mut comments = Comments::line(self.ctx.provenance(origins));
        if let Some(note) = note {
            comments.push(note);
        }
        let paste = match &first {
            Some(origin) => format!("{}#{}", self.ctx.relative(&origin.file), origin.name),
            None => format!("{}#main", self.ctx.relative(self.ctx.main_file)),
        };
        comments.push(
            "loaded by PasteDeploy as it is (paste.deploy.loadapp), with the .ini's [loggers]",
        );
        if !inside.is_empty() {
            let sections: Vec<String> = inside
                .iter()
                .map(|leaf| self.ctx.provenance(&leaf.origin).replacen("from ", "", 1))
                .collect();
            let line = self.ctx.not_native(
                origins,
                &format!(
                    "filters of the section itself (filter-with, filter-app) load with it, in \
                     Python: {}",
                    sections.join(", ")
                ),
            );
            comments.push(line);
        }
        if !origins.standalone.is_empty() {
            let line = self.ctx.differs(
                origins,
                &format!(
                    "loaded alone, its global_conf differs from the converted file's in: {} \
                     (set them in its own [DEFAULT])",
                    origins.standalone.join(", ")
                ),
            );
            comments.push(line);
        }
        AppEntry {
            comments,
            name: "default".into(),
            paste,
        }
    }

    /// A key not yet used under `[apps]`/`[upstream]`, from a section name.
    fn unique(&mut self, wanted: &str) -> String {
        let base: String = wanted
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let base = if base.is_empty() || base == "default" {
            format!("app_{base}")
        } else {
            base
        };
        let mut name = base.clone();
        let mut n = 2;
        while !self.taken.insert(name.clone()) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }
}

/// True when the urlmap takes every request itself (a root mount without a domain, or
/// a not_found_app).
fn covers_everything(map: &UrlMap) -> bool {
    map.not_found.is_some()
        || map
            .mounts
            .iter()
            .any(|m| m.domain.is_none() && m.path.is_empty())
}

/// `path` of a route: the prefix, `"/"` for the root of any host, none for the root of
/// one host.
fn route_path(host: Option<&str>, path: &str) -> Option<String> {
    match (host, path) {
        (Some(_), "") => None,
        (None, "") => Some("/".into()),
        (_, path) => Some(path.to_owned()),
    }
}

/// URLMap compares a domain with the Host (port removed) or with `host:port`, the port
/// being 80/443 when the Host names none: `example.com:80` also takes `example.com`.
fn host_patterns(domain: &str) -> Vec<String> {
    let domain = domain.to_ascii_lowercase();
    match domain.rsplit_once(':') {
        Some((name, "80" | "443")) => vec![domain.clone(), name.to_owned()],
        _ => vec![domain],
    }
}

/// `address`, `allowed_request_methods`, `suppress_http_headers` of Paste's proxy.
fn proxy_target(leaf: &Leaf) -> Result<ProxyTarget, String> {
    let conf = &leaf.local_conf;
    let address = conf
        .get("address")
        .ok_or("Paste's proxy without an address")?;
    let (scheme, rest) = address
        .split_once("://")
        .ok_or_else(|| format!("proxy address {address:?} is not a URL"))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], &rest[at..]),
        None => (rest, ""),
    };
    let scheme = scheme.to_ascii_lowercase();
    let server = match scheme.as_str() {
        "http" if authority.contains(':') => authority.to_owned(),
        "http" => format!("{authority}:80"),
        "https" => format!("https://{authority}"),
        other => return Err(format!("proxy scheme {other:?} is not http or https")),
    };
    let mut notes = vec![
        format!(
            "Paste's proxy sent Host: {authority} and only the path below the mount \
             (PATH_INFO); set the upstream's Host and strip_prefix options (README, \
             \"Upstreams\") to do the same"
        ),
        "Paste's proxy set X-Forwarded-For to the peer address only".to_owned(),
    ];
    if !path.is_empty() && path != "/" {
        notes.push(format!(
            "Paste's proxy put the request path under {path}; the upstream gets it as it is"
        ));
    }
    let methods = conf
        .get("allowed_request_methods")
        .map(|m| {
            m.split_whitespace()
                .map(str::to_ascii_uppercase)
                .collect::<Vec<_>>()
        })
        .filter(|m| !m.is_empty());
    let suppress = conf
        .get("suppress_http_headers")
        // As written: Paste compared them with the header names, `_` never matched.
        .map(|h| h.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default();
    Ok(ProxyTarget {
        servers: vec![server],
        methods,
        suppress,
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urlmap_domains_and_paths_as_route_conditions() {
        assert_eq!(host_patterns("Example.com"), ["example.com"]);
        assert_eq!(
            host_patterns("example.com:80"),
            ["example.com:80", "example.com"]
        );
        assert_eq!(host_patterns("example.com:8080"), ["example.com:8080"]);
        assert_eq!(route_path(None, ""), Some("/".into()));
        assert_eq!(route_path(Some("a.example"), ""), None);
        assert_eq!(route_path(Some("a.example"), "/x"), Some("/x".into()));
    }
}
