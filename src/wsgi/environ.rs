//! Building the WSGI `environ` dict (PEP 3333 "environ Variables").
//!
//! Every CGI value is a `str` holding the latin-1 decoding of the raw bytes. The parts
//! that never change are built once into a template dict; each request copies it and
//! adds its own keys, all of them interned strings created at start-up.

use std::collections::HashMap;
use std::net::SocketAddr;

use http::header::{self, HeaderName};
use http::{HeaderMap, Method, Uri, Version};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyString, PyTuple};

/// What the bridge knows about one request before handing it to Python.
#[derive(Debug)]
pub struct RequestHead {
    /// The request method.
    pub method: Method,
    /// The request target, its path canonical (see `gateway_middleware::request_path`).
    pub uri: Uri,
    /// The target as the client sent it, when it was not canonical (`RAW_URI`).
    pub original_target: Option<http::uri::PathAndQuery>,
    /// The decoded prefix a route mounted the app at: `SCRIPT_NAME` for this request,
    /// instead of the app's configured one.
    pub mount: Option<bytes::Bytes>,
    /// HTTP/1.0, HTTP/1.1 or HTTP/2.
    pub version: Version,
    /// Request headers.
    pub headers: HeaderMap,
    /// The client's address, if the transport has one.
    pub peer: Option<SocketAddr>,
    /// The local address the request arrived on.
    pub local: Option<SocketAddr>,
    /// `"http"` or `"https"`.
    pub scheme: &'static str,
    /// The user an auth layer authenticated (`REMOTE_USER`).
    pub remote_user: Option<String>,
    /// The verified TLS client certificate's subject (`SSL_CLIENT_S_DN`).
    pub client_subject: Option<String>,
}

/// Static facts about the deployment that go into every environ.
#[derive(Clone, Debug)]
pub struct EnvironSettings {
    /// The mount prefix (`SCRIPT_NAME`), empty for the root.
    pub script_name: String,
    /// True when more than one Python thread serves requests.
    pub multithread: bool,
    /// True when more than one worker process serves requests.
    pub multiprocess: bool,
}

macro_rules! interned_keys {
    ($($field:ident = $text:literal),* $(,)?) => {
        /// Interned environ keys, created once.
        struct Keys { $($field: Py<PyString>,)* }
        impl Keys {
            fn new(py: Python<'_>) -> Self {
                Self { $($field: PyString::intern(py, $text).unbind(),)* }
            }
        }
    };
}

interned_keys! {
    request_method = "REQUEST_METHOD",
    script_name = "SCRIPT_NAME",
    path_info = "PATH_INFO",
    query_string = "QUERY_STRING",
    raw_uri = "RAW_URI",
    request_uri = "REQUEST_URI",
    content_type = "CONTENT_TYPE",
    content_length = "CONTENT_LENGTH",
    server_name = "SERVER_NAME",
    server_port = "SERVER_PORT",
    server_protocol = "SERVER_PROTOCOL",
    remote_addr = "REMOTE_ADDR",
    remote_port = "REMOTE_PORT",
    remote_user = "REMOTE_USER",
    https = "HTTPS",
    ssl_client_s_dn = "SSL_CLIENT_S_DN",
    ssl_client_verify = "SSL_CLIENT_VERIFY",
    http_host = "HTTP_HOST",
    url_scheme = "wsgi.url_scheme",
    input = "wsgi.input",
}

/// Builds one environ dict per request from a template made at start-up.
pub struct EnvironBuilder {
    keys: Keys,
    template: Py<PyDict>,
    /// `HTTP_*` keys for the header names browsers and proxies commonly send.
    header_keys: HashMap<HeaderName, Py<PyString>>,
    methods: HashMap<Method, Py<PyString>>,
    protocols: [Py<PyString>; 3],
    empty: Py<PyString>,
    http: Py<PyString>,
    script_name: String,
}

impl EnvironBuilder {
    /// Build the template: `errors` and `file_wrapper` are the objects every request shares.
    pub fn new(
        py: Python<'_>,
        settings: &EnvironSettings,
        errors: Bound<'_, PyAny>,
        file_wrapper: Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let template = PyDict::new(py);
        template.set_item("wsgi.version", PyTuple::new(py, [1, 0])?)?;
        template.set_item("wsgi.errors", errors)?;
        template.set_item("wsgi.file_wrapper", file_wrapper)?;
        template.set_item("wsgi.multithread", PyBool::new(py, settings.multithread))?;
        template.set_item("wsgi.multiprocess", PyBool::new(py, settings.multiprocess))?;
        template.set_item("wsgi.run_once", false)?;
        template.set_item("wsgi.input_terminated", true)?;
        template.set_item("SCRIPT_NAME", settings.script_name.as_str())?;
        template.set_item(
            "SERVER_SOFTWARE",
            concat!("wsgi-gateway/", env!("CARGO_PKG_VERSION")),
        )?;
        template.set_item("GATEWAY_INTERFACE", "CGI/1.1")?;

        let common_headers = [
            header::ACCEPT,
            header::ACCEPT_ENCODING,
            header::ACCEPT_LANGUAGE,
            header::AUTHORIZATION,
            header::CACHE_CONTROL,
            header::CONNECTION,
            header::COOKIE,
            header::HOST,
            header::IF_MODIFIED_SINCE,
            header::IF_NONE_MATCH,
            header::ORIGIN,
            header::REFERER,
            header::USER_AGENT,
            HeaderName::from_static("x-forwarded-for"),
            HeaderName::from_static("x-forwarded-proto"),
            HeaderName::from_static("x-forwarded-host"),
            HeaderName::from_static("x-request-id"),
            HeaderName::from_static("x-requested-with"),
            HeaderName::from_static("traceparent"),
        ];
        let header_keys = common_headers
            .into_iter()
            .map(|name| {
                let key = PyString::intern(py, &cgi_header_key(&name)).unbind();
                (name, key)
            })
            .collect();
        let methods = [
            Method::GET,
            Method::POST,
            Method::HEAD,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
            Method::OPTIONS,
        ]
        .into_iter()
        .map(|m| {
            let text = PyString::intern(py, m.as_str()).unbind();
            (m, text)
        })
        .collect();
        Ok(Self {
            keys: Keys::new(py),
            template: template.unbind(),
            header_keys,
            methods,
            protocols: [
                PyString::intern(py, "HTTP/1.0").unbind(),
                PyString::intern(py, "HTTP/1.1").unbind(),
                PyString::intern(py, "HTTP/2").unbind(),
            ],
            empty: PyString::intern(py, "").unbind(),
            http: PyString::intern(py, "http").unbind(),
            script_name: settings.script_name.clone(),
        })
    }

    /// The environ for one request, with `input` as `wsgi.input`.
    pub fn build<'py>(
        &self,
        py: Python<'py>,
        head: &RequestHead,
        input: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let keys = &self.keys;
        let environ = self.template.bind(py).copy()?;

        let method = match self.methods.get(&head.method) {
            Some(interned) => interned.bind(py).clone(),
            None => PyString::new(py, head.method.as_str()),
        };
        environ.set_item(keys.request_method.bind(py), method)?;

        let raw_path = head.uri.path();
        // Borrows the raw path unless it has %-escapes.
        let decoded: std::borrow::Cow<'_, [u8]> =
            percent_encoding::percent_decode(raw_path.as_bytes()).into();
        let script_name = match &head.mount {
            Some(mount) => {
                environ.set_item(keys.script_name.bind(py), latin1(py, mount))?;
                &mount[..]
            }
            None => self.script_name.as_bytes(),
        };
        let path_info = decoded.strip_prefix(script_name).unwrap_or(&decoded);
        environ.set_item(keys.path_info.bind(py), latin1(py, path_info))?;
        let query = match head.uri.query() {
            Some(query) => PyString::new(py, query),
            None => self.empty.bind(py).clone(),
        };
        environ.set_item(keys.query_string.bind(py), query)?;
        let target = head
            .original_target
            .as_ref()
            .or(head.uri.path_and_query())
            .map(|pq| pq.as_str())
            .unwrap_or(raw_path);
        let target = PyString::new(py, target);
        environ.set_item(keys.raw_uri.bind(py), &target)?;
        environ.set_item(keys.request_uri.bind(py), target)?;

        let protocol = match head.version {
            Version::HTTP_10 => &self.protocols[0],
            Version::HTTP_2 => &self.protocols[2],
            _ => &self.protocols[1],
        };
        environ.set_item(keys.server_protocol.bind(py), protocol.bind(py))?;
        let scheme = if head.scheme == "http" {
            self.http.bind(py).clone()
        } else {
            PyString::new(py, head.scheme)
        };
        environ.set_item(keys.url_scheme.bind(py), scheme)?;

        self.set_headers(py, &environ, &head.headers)?;
        // HTTP/2 carries the host in :authority, which is not a header field.
        let host_header = head.headers.get(header::HOST).map(|v| v.as_bytes());
        let authority = head.uri.authority().map(|a| a.as_str().as_bytes());
        if host_header.is_none() {
            if let Some(authority) = authority {
                environ.set_item(keys.http_host.bind(py), latin1(py, authority))?;
            }
        }
        let host = host_header.or(authority).map(String::from_utf8_lossy);
        let (server_name, server_port) = server_name_and_port(host.as_deref(), head);
        environ.set_item(keys.server_name.bind(py), server_name)?;
        environ.set_item(keys.server_port.bind(py), server_port)?;

        if let Some(peer) = head.peer {
            environ.set_item(keys.remote_addr.bind(py), peer.ip().to_string())?;
            environ.set_item(keys.remote_port.bind(py), peer.port().to_string())?;
        }
        if head.scheme == "https" {
            environ.set_item(keys.https.bind(py), "on")?;
        }
        if let Some(subject) = &head.client_subject {
            environ.set_item(keys.ssl_client_s_dn.bind(py), subject.as_str())?;
            environ.set_item(keys.ssl_client_verify.bind(py), "SUCCESS")?;
        }
        if let Some(user) = &head.remote_user {
            environ.set_item(keys.remote_user.bind(py), user.as_str())?;
        }
        environ.set_item(keys.input.bind(py), input)?;
        Ok(environ)
    }

    /// `HTTP_*`, `CONTENT_TYPE` and `CONTENT_LENGTH`. Repeated fields are joined with
    /// `,` (cookies with `; `); names containing `_` are dropped so that `X_Auth` cannot
    /// pose as `X-Auth` once both are mapped to `HTTP_X_AUTH`.
    fn set_headers(
        &self,
        py: Python<'_>,
        environ: &Bound<'_, PyDict>,
        headers: &HeaderMap,
    ) -> PyResult<()> {
        for name in headers.keys() {
            if name.as_str().contains('_') {
                continue;
            }
            let key = if name == header::CONTENT_TYPE {
                self.keys.content_type.bind(py).clone()
            } else if name == header::CONTENT_LENGTH {
                self.keys.content_length.bind(py).clone()
            } else {
                match self.header_keys.get(name) {
                    Some(key) => key.bind(py).clone(),
                    None => PyString::new(py, &cgi_header_key(name)),
                }
            };
            let mut values = headers.get_all(name).iter();
            let first = values.next().map(|v| v.as_bytes()).unwrap_or_default();
            let value = match values.next() {
                None => latin1(py, first),
                Some(second) => {
                    let separator: &[u8] = if name == header::COOKIE { b"; " } else { b"," };
                    let mut joined = first.to_vec();
                    for value in std::iter::once(second).chain(values) {
                        joined.extend_from_slice(separator);
                        joined.extend_from_slice(value.as_bytes());
                    }
                    latin1(py, &joined)
                }
            };
            environ.set_item(key, value)?;
        }
        Ok(())
    }
}

/// `user-agent` -> `HTTP_USER_AGENT`.
fn cgi_header_key(name: &HeaderName) -> String {
    let mut key = String::with_capacity(5 + name.as_str().len());
    key.push_str("HTTP_");
    key.extend(name.as_str().chars().map(|c| match c {
        '-' => '_',
        c => c.to_ascii_uppercase(),
    }));
    key
}

/// `SERVER_NAME` and `SERVER_PORT`, neither ever empty. The name comes from the Host
/// header (else the local address). The port is the one Host names, else the one the
/// request arrived on (RFC 3875 section 4.1.15, as gunicorn, waitress and wsgiref do),
/// else (a Unix socket) the scheme's default.
fn server_name_and_port(host: Option<&str>, head: &RequestHead) -> (String, String) {
    let arrival_port = || match head.local {
        Some(local) => local.port().to_string(),
        None if head.scheme == "https" => "443".to_owned(),
        None => "80".to_owned(),
    };
    if let Some(host) = host.filter(|h| !h.is_empty()) {
        let (name, port) = if let Some(rest) = host.strip_prefix('[') {
            match rest.split_once(']') {
                Some((ip, tail)) => (format!("[{ip}]"), tail.strip_prefix(':')),
                None => (host.to_owned(), None),
            }
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) => (name.to_owned(), Some(port)),
                None => (host.to_owned(), None),
            }
        };
        let port = port
            .filter(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            .map_or_else(arrival_port, str::to_owned);
        return (name, port);
    }
    match head.local {
        Some(local) => (local.ip().to_string(), local.port().to_string()),
        None => ("localhost".to_owned(), arrival_port()),
    }
}

/// A Python `str` whose code points are the bytes (latin-1), as PEP 3333 asks.
pub fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return PyString::new(py, unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    // SAFETY: PyUnicode_DecodeLatin1 cannot fail for any byte sequence except on
    // memory exhaustion, which pyo3 turns into a panic-free error via from_owned_ptr.
    unsafe {
        let ptr = pyo3::ffi::PyUnicode_DecodeLatin1(
            bytes.as_ptr().cast(),
            bytes.len() as pyo3::ffi::Py_ssize_t,
            std::ptr::null(),
        );
        Bound::from_owned_ptr(py, ptr).cast_into_unchecked()
    }
}
