//! `[server:main]` (waitress, Paste's httpserver, gunicorn) -> `[server]`: the
//! addresses, threads and workers; every other option is named in a comment.

use std::collections::BTreeMap;

use super::context::Context;
use super::description::{Origin, Origins, ServerSection};
use super::plan::{Comments, ServerPlan};

/// The servers whose defaults and option names are known.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Server {
    Waitress,
    PasteHttp,
    Gunicorn,
    Other,
}

impl Server {
    fn of(uses: &str) -> Self {
        let uses = uses.to_ascii_lowercase();
        if uses.contains("waitress") {
            Server::Waitress
        } else if uses.contains("paste#http") || uses.contains("paste.httpserver") {
            Server::PasteHttp
        } else if uses.contains("gunicorn") {
            Server::Gunicorn
        } else {
            Server::Other
        }
    }

    /// Host, port and threads when the section does not set them.
    fn defaults(self) -> (Option<&'static str>, Option<&'static str>, Option<i64>) {
        match self {
            Server::Waitress => (Some("0.0.0.0"), Some("8080"), Some(4)),
            Server::PasteHttp => (Some("127.0.0.1"), Some("8080"), Some(10)),
            Server::Gunicorn => (Some("127.0.0.1"), Some("8000"), Some(1)),
            Server::Other => (None, None, None),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Server::Waitress => "waitress",
            Server::PasteHttp => "Paste's httpserver",
            Server::Gunicorn => "gunicorn",
            Server::Other => "this server",
        }
    }
}

/// `[server]` from the section.
pub(super) fn server(section: &ServerSection, ctx: &mut Context<'_>) -> ServerPlan {
    let mut options: BTreeMap<String, String> = section.options.clone();
    let uses = options.remove("use").unwrap_or_default();
    let kind = Server::of(&uses);
    let origins = Origins {
        origin: vec![Origin {
            file: ctx.main_file.to_path_buf(),
            section: section.section.clone(),
            name: "main".into(),
            use_: (!uses.is_empty()).then(|| uses.clone()),
        }],
        own_origin: true,
        standalone: Vec::new(),
    };
    let mut comments = Comments::line(ctx.provenance(&origins));
    let (default_host, default_port, default_threads) = kind.defaults();
    let mut bind = Vec::new();
    let listen = options.remove("listen").or_else(|| {
        (kind == Server::Gunicorn)
            .then(|| options.remove("bind"))
            .flatten()
    });
    let unix_socket = options.remove("unix_socket");
    let host = options.remove("host");
    let port = options.remove("port");
    if let Some(path) = unix_socket {
        bind.push(format!("unix:{path}"));
    } else if let Some(listen) = listen {
        for address in listen.split([' ', ',', '\n']).filter(|a| !a.is_empty()) {
            match address.strip_prefix("*:") {
                Some(port) => {
                    comments.push(format!(
                        "NOTE: {address} listened on every IPv4 and IPv6 address; 0.0.0.0 is IPv4 only (add \"[::]:{port}\" for IPv6)"
                    ));
                    bind.push(format!("0.0.0.0:{port}"));
                }
                None => bind.push(address.to_owned()),
            }
        }
    } else if let (Some(host), Some(port)) = (
        host.as_deref().or(default_host),
        port.as_deref().or(default_port),
    ) {
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        bind.push(format!("{host}:{port}"));
    }
    let threads_key = match kind {
        Server::PasteHttp => "threadpool_workers",
        _ => "threads",
    };
    let threads = match options.remove(threads_key) {
        Some(text) => number(&text, threads_key, &mut comments),
        None => {
            if let Some(n) = default_threads {
                comments.push(format!("threads = {n}: {}'s default", kind.name()));
            }
            default_threads
        }
    };
    let workers = match options.remove("workers") {
        Some(text) => number(&text, "workers", &mut comments),
        None => None,
    };
    for (key, value) in &options {
        let line = ctx.not_native(&origins, &format!("{key} = {value} is not translated"));
        comments.push(line);
    }
    ServerPlan {
        comments,
        bind,
        threads,
        workers,
    }
}

fn number(text: &str, key: &str, comments: &mut Comments) -> Option<i64> {
    match text.trim().parse() {
        Ok(n) => Some(n),
        Err(_) => {
            comments.push(format!("NOTE: {key} = {text:?} is not a number; left out"));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn convert(options: &[(&str, &str)]) -> (ServerPlan, Vec<String>) {
        let mut ctx = Context {
            main_file: Path::new("/srv/production.ini"),
            out_dir: PathBuf::from("/srv"),
            cwd: PathBuf::from("/srv"),
            logging: None,
            warnings: Vec::new(),
        };
        let section = ServerSection {
            section: "server:main".into(),
            options: options
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        let plan = server(&section, &mut ctx);
        (plan, ctx.warnings)
    }

    #[test]
    fn waitress_paste_and_gunicorn_sections() {
        let (waitress, _) = convert(&[("use", "egg:waitress#main"), ("port", "6543")]);
        assert_eq!(waitress.bind, ["0.0.0.0:6543"]);
        assert_eq!(waitress.threads, Some(4), "waitress's default");
        let (listen, _) = convert(&[("use", "egg:waitress#main"), ("listen", "*:8080 [::1]:9")]);
        assert_eq!(listen.bind, ["0.0.0.0:8080", "[::1]:9"]);
        let (paste, _) = convert(&[("use", "egg:Paste#http"), ("threadpool_workers", "7")]);
        assert_eq!(
            (paste.bind[0].as_str(), paste.threads),
            ("127.0.0.1:8080", Some(7))
        );
        let (gunicorn, warnings) = convert(&[
            ("use", "egg:gunicorn#main"),
            ("bind", "unix:/run/app.sock"),
            ("workers", "3"),
            ("worker_class", "gevent"),
        ]);
        assert_eq!(gunicorn.bind, ["unix:/run/app.sock"]);
        assert_eq!(gunicorn.workers, Some(3));
        assert_eq!(
            warnings,
            ["[server:main]: worker_class = gevent is not translated"]
        );
        let (ipv6, _) = convert(&[("use", "egg:waitress#main"), ("host", "::"), ("port", "80")]);
        assert_eq!(ipv6.bind, ["[::]:80"]);
    }
}
