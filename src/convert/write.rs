//! The plan as gateway.toml text, written with `toml_edit` so every entry carries its
//! comment: `[server]`, `[app]`, `[apps.*]`, `[upstream.*]`, `[[middleware]]`, then
//! `[[route]]`s with their `[[route.middleware]]`.

use std::collections::BTreeMap;

use toml_edit::{value, Array, ArrayOfTables, DocumentMut, InlineTable, Item, Table, Value};

use super::plan::{Action, AppEntry, Comments, Layer, LayerKind, Plan, Route};

/// Comment lines are wrapped to this width.
const WIDTH: usize = 88;

/// Options tables longer than this (in characters, inline) get a table of their own.
const INLINE_MAX: usize = 60;

/// The TOML text of `plan`.
pub(super) fn write(plan: &Plan) -> String {
    let mut doc = DocumentMut::new();
    let mut position = 0;
    let mut next = || {
        position += 1;
        position
    };
    // The header goes above the first table written.
    let mut header = plan.header.clone();

    if let Some(server) = &plan.server {
        let mut table = Table::new();
        if !server.bind.is_empty() {
            table.insert("bind", value(strings(&server.bind)));
        }
        if let Some(threads) = server.threads {
            table.insert("threads", value(threads));
        }
        if let Some(workers) = server.workers {
            table.insert("workers", value(workers));
        }
        set_comments(&mut table, &std::mem::take(&mut header), &server.comments);
        table.set_position(next());
        doc.insert("server", Item::Table(table));
    }

    let mut app = Table::new();
    let mut app_comments = Comments::default();
    if let Some(entry) = &plan.default_app {
        app.insert("paste", value(&entry.paste));
        app_comments = entry.comments.clone();
    } else {
        app_comments.push("No default app: the routes below take every request they can.");
    }
    if !plan.python_path.is_empty() {
        app.insert("python_path", value(strings(&plan.python_path)));
        app_comments.push("python_path: where the apps' modules are imported from.");
    }
    set_comments(&mut app, &std::mem::take(&mut header), &app_comments);
    app.set_position(next());
    doc.insert("app", Item::Table(app));

    if !plan.apps.is_empty() {
        let mut apps = Table::new();
        apps.set_implicit(true);
        for entry in &plan.apps {
            apps.insert(&entry.name, Item::Table(app_table(entry, next())));
        }
        doc.insert("apps", Item::Table(apps));
    }

    if !plan.upstreams.is_empty() {
        let mut upstreams = Table::new();
        upstreams.set_implicit(true);
        for upstream in &plan.upstreams {
            let mut table = Table::new();
            table.insert("servers", value(strings(&upstream.servers)));
            set_comments(&mut table, &[], &upstream.comments);
            table.set_position(next());
            upstreams.insert(&upstream.name, Item::Table(table));
        }
        doc.insert("upstream", Item::Table(upstreams));
    }

    if !plan.middleware.is_empty() {
        let mut entries = ArrayOfTables::new();
        for layer in &plan.middleware {
            let mut table = layer_table(layer);
            table.set_position(next());
            entries.push(table);
        }
        doc.insert("middleware", Item::ArrayOfTables(entries));
    }

    if !plan.routes.is_empty() {
        let mut routes = ArrayOfTables::new();
        for route in &plan.routes {
            let mut table = route_table(route);
            table.set_position(next());
            routes.push(table);
        }
        doc.insert("route", Item::ArrayOfTables(routes));
    }
    doc.to_string()
}

fn app_table(entry: &AppEntry, position: usize) -> Table {
    let mut table = Table::new();
    table.insert("paste", value(&entry.paste));
    set_comments(&mut table, &[], &entry.comments);
    table.set_position(position);
    table
}

fn layer_table(layer: &Layer) -> Table {
    let mut table = Table::new();
    match &layer.kind {
        LayerKind::AccessLog { format, output } => {
            table.insert("kind", value("access_log"));
            table.insert("format", value(format));
            table.insert("output", value(output));
        }
        LayerKind::Compression { gzip_level } => {
            table.insert("kind", value("compression"));
            table.insert("encodings", value(strings(&["gzip".to_owned()])));
            table.insert("gzip_level", value(i64::from(*gzip_level)));
            table.insert("min_size", value(0));
        }
        LayerKind::Auth { realm, htpasswd } => {
            table.insert("kind", value("auth"));
            table.insert("scheme", value("basic"));
            table.insert("realm", value(realm));
            table.insert("htpasswd", value(htpasswd));
        }
        LayerKind::RemoveRequestHeaders(names) => {
            table.insert("kind", value("headers"));
            let mut request = InlineTable::new();
            request.insert("remove", Value::Array(strings(names)));
            table.insert("request", value(request));
        }
        LayerKind::Python {
            protocol,
            factory,
            options,
            global_conf,
        } => {
            table.insert("kind", value("python"));
            table.insert(protocol.key(), value(factory));
            table.insert("options", string_table(options));
            if !global_conf.is_empty() {
                table.insert("global_conf", string_table(global_conf));
            }
        }
    }
    set_comments(&mut table, &[], &layer.comments);
    table
}

fn route_table(route: &Route) -> Table {
    let mut table = Table::new();
    match route.host.as_slice() {
        [] => {}
        [one] => {
            table.insert("host", value(one));
        }
        several => {
            table.insert("host", value(strings(several)));
        }
    }
    if let Some(path) = &route.path {
        table.insert("path", value(path));
    }
    if let Some(methods) = &route.methods {
        table.insert("methods", value(strings(methods)));
    }
    match &route.action {
        Action::App(name) => {
            table.insert("app", value(name));
        }
        Action::Static { dir, cache_control } => {
            let mut options = InlineTable::new();
            options.insert("dir", dir.into());
            if let Some(cache_control) = cache_control {
                options.insert("cache_control", cache_control.into());
            }
            table.insert("static", value(options));
        }
        Action::Proxy(name) => {
            table.insert("proxy", value(name));
        }
        Action::Respond { status, body } => {
            let mut respond = InlineTable::new();
            respond.insert("status", i64::from(*status).into());
            respond.insert("body", body.into());
            table.insert("respond", value(respond));
        }
    }
    if !route.middleware.is_empty() {
        let mut entries = ArrayOfTables::new();
        for layer in &route.middleware {
            entries.push(layer_table(layer));
        }
        table.insert("middleware", Item::ArrayOfTables(entries));
    }
    set_comments(&mut table, &[], &route.comments);
    table
}

/// A table of strings: inline when short, a table of its own when long.
fn string_table(entries: &BTreeMap<String, String>) -> Item {
    let mut inline = InlineTable::new();
    for (key, text) in entries {
        inline.insert(key, text.into());
    }
    if inline.to_string().len() <= INLINE_MAX {
        value(inline)
    } else {
        let mut table = Table::new();
        for (key, text) in entries {
            table.insert(key, value(text));
        }
        Item::Table(table)
    }
}

fn strings(items: &[String]) -> Array {
    items.iter().map(String::as_str).collect()
}

/// `header` (for the first table) then a blank line, then `comments`, as `#` lines
/// above the table's header.
fn set_comments(table: &mut Table, header: &[String], comments: &Comments) {
    let mut text = String::new();
    if !header.is_empty() {
        for line in header {
            text.push_str(&comment_lines(line));
        }
        text.push('\n');
    } else {
        text.push('\n');
    }
    for line in &comments.0 {
        text.push_str(&comment_lines(line));
    }
    table.decor_mut().set_prefix(text);
}

/// One comment, wrapped at [`WIDTH`]: `# text`, continuation lines indented.
fn comment_lines(text: &str) -> String {
    let mut out = String::new();
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > WIDTH && line.len() > 2 {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#  ");
        }
        line.push(' ');
        line.push_str(word);
    }
    if line.len() > 1 {
        out.push_str(&line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_wrap_with_indented_continuations() {
        let text = comment_lines(&"word ".repeat(40));
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 1);
        assert!(lines.iter().all(|l| l.len() <= WIDTH), "{text}");
        assert!(lines[0].starts_with("# word"));
        assert!(lines[1].starts_with("#   word"));
    }

    #[test]
    fn long_option_tables_get_a_table_of_their_own() {
        let short: BTreeMap<String, String> = [("a".to_owned(), "1".to_owned())].into();
        assert!(matches!(
            string_table(&short),
            Item::Value(Value::InlineTable(_))
        ));
        let long: BTreeMap<String, String> = (0..6)
            .map(|i| (format!("option_{i}"), "a longer value".to_owned()))
            .collect();
        assert!(matches!(string_table(&long), Item::Table(_)));
    }
}
