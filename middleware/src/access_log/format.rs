//! Access log formats: Apache combined, JSON, or a gunicorn `access_log_format` string.

use http::HeaderName;

/// Why a format string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FormatError {
    /// An atom gunicorn does not define.
    #[error("unknown access log atom %({0})s; known: h l u t r m U q H s B b f a T D M L p trace_id span_id upstream_addr upstream_time {{header}}i {{header}}o {{name}}e")]
    UnknownAtom(String),
    /// A `%(` without its closing `)s`.
    #[error("unterminated atom at byte {0} of the access log format")]
    Unterminated(usize),
    /// An invalid header name inside `{...}i` or `{...}o`.
    #[error("invalid header name {0:?} in the access log format")]
    HeaderName(String),
}

/// One piece of a gunicorn-style format.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Atom {
    /// Text copied as is.
    Literal(String),
    /// `h`: remote address.
    RemoteAddr,
    /// `l`: always `-`.
    Dash,
    /// `u`: authenticated user or `-`.
    User,
    /// `t`: `[10/Oct/2000:13:55:36 -0700]`.
    Time,
    /// `r`: `GET /path?q HTTP/1.1`.
    RequestLine,
    /// `m`: method.
    Method,
    /// `U`: path without the query.
    Path,
    /// `q`: query string.
    Query,
    /// `H`: protocol.
    Protocol,
    /// `s`: status code.
    Status,
    /// `B`: body bytes (0 when empty).
    BytesZero,
    /// `b`: body bytes (`-` when empty).
    BytesDash,
    /// `f`: Referer.
    Referer,
    /// `a`: User-Agent.
    UserAgent,
    /// `T`: whole seconds.
    Seconds,
    /// `D`: microseconds.
    Micros,
    /// `M`: milliseconds.
    Millis,
    /// `L`: decimal seconds.
    DecimalSeconds,
    /// `p`: process id.
    Pid,
    /// `{name}i`: a request header.
    RequestHeader(HeaderName),
    /// `{name}o`: a response header.
    ResponseHeader(HeaderName),
    /// `{name}e`: an environment variable of the gateway process.
    Env(String),
    /// `trace_id`: the request's W3C trace id (`-` when traces are not exported).
    TraceId,
    /// `span_id`: the id of the request's server span (`-` when not exported).
    SpanId,
    /// `upstream_addr`: the upstream servers a proxied request went to (`-` otherwise).
    UpstreamAddr,
    /// `upstream_time`: seconds (three decimals) until the upstream's response head
    /// (`-` when not proxied).
    UpstreamTime,
}

/// How access log lines look.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Apache combined log format (gunicorn's default format).
    Combined,
    /// One JSON object per line.
    Json,
    /// Parsed gunicorn atoms.
    Atoms(Vec<Atom>),
}

/// gunicorn's default `access_log_format`, which is Apache's combined format.
pub(super) const COMBINED: &str = r#"%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s""#;

impl LogFormat {
    /// `"combined"`, `"json"`, or a gunicorn format string.
    pub fn parse(text: &str) -> Result<Self, FormatError> {
        match text {
            "combined" => Ok(LogFormat::Combined),
            "json" => Ok(LogFormat::Json),
            _ => parse_atoms(text).map(LogFormat::Atoms),
        }
    }

    /// The atoms that render this format (JSON has none).
    pub fn atoms(&self) -> Vec<Atom> {
        match self {
            LogFormat::Combined => parse_atoms(COMBINED).expect("the combined format parses"),
            LogFormat::Json => Vec::new(),
            LogFormat::Atoms(atoms) => atoms.clone(),
        }
    }
}

fn parse_atoms(text: &str) -> Result<Vec<Atom>, FormatError> {
    let mut atoms = Vec::new();
    let mut literal = String::new();
    let mut rest = text;
    let mut offset = 0;
    while let Some(at) = rest.find("%(") {
        literal.push_str(&rest[..at]);
        let after = &rest[at + 2..];
        let end = after
            .find(")s")
            .ok_or(FormatError::Unterminated(offset + at))?;
        let name = &after[..end];
        if !literal.is_empty() {
            atoms.push(Atom::Literal(std::mem::take(&mut literal)));
        }
        atoms.push(atom(name)?);
        let consumed = at + 2 + end + 2;
        offset += consumed;
        rest = &rest[consumed..];
    }
    literal.push_str(rest);
    if !literal.is_empty() {
        atoms.push(Atom::Literal(literal));
    }
    Ok(atoms)
}

fn atom(name: &str) -> Result<Atom, FormatError> {
    if let Some(inner) = name.strip_prefix('{') {
        let (field, kind) = inner
            .rsplit_once('}')
            .ok_or_else(|| FormatError::UnknownAtom(name.into()))?;
        let header =
            || HeaderName::try_from(field).map_err(|_| FormatError::HeaderName(field.into()));
        return match kind {
            "i" => Ok(Atom::RequestHeader(header()?)),
            "o" => Ok(Atom::ResponseHeader(header()?)),
            "e" => Ok(Atom::Env(field.to_owned())),
            _ => Err(FormatError::UnknownAtom(name.into())),
        };
    }
    Ok(match name {
        "h" => Atom::RemoteAddr,
        "l" => Atom::Dash,
        "u" => Atom::User,
        "t" => Atom::Time,
        "r" => Atom::RequestLine,
        "m" => Atom::Method,
        "U" => Atom::Path,
        "q" => Atom::Query,
        "H" => Atom::Protocol,
        "s" => Atom::Status,
        "B" => Atom::BytesZero,
        "b" => Atom::BytesDash,
        "f" => Atom::Referer,
        "a" => Atom::UserAgent,
        "T" => Atom::Seconds,
        "D" => Atom::Micros,
        "M" => Atom::Millis,
        "L" => Atom::DecimalSeconds,
        "p" => Atom::Pid,
        "trace_id" => Atom::TraceId,
        "span_id" => Atom::SpanId,
        "upstream_addr" => Atom::UpstreamAddr,
        "upstream_time" => Atom::UpstreamTime,
        _ => return Err(FormatError::UnknownAtom(name.into())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_gunicorn_formats() {
        let format = LogFormat::parse(
            r#"%(h)s "%(r)s" %(s)s %({x-request-id}i)s %({content-type}o)s %(D)s"#,
        )
        .unwrap();
        let LogFormat::Atoms(atoms) = format else {
            panic!()
        };
        assert_eq!(atoms[0], Atom::RemoteAddr);
        assert_eq!(atoms[1], Atom::Literal(" \"".into()));
        assert_eq!(atoms[2], Atom::RequestLine);
        assert!(matches!(&atoms[6], Atom::RequestHeader(h) if h == "x-request-id"));
        assert!(matches!(&atoms[8], Atom::ResponseHeader(h) if h == "content-type"));
        assert_eq!(atoms[10], Atom::Micros);
        assert_eq!(LogFormat::parse("json").unwrap(), LogFormat::Json);
        assert_eq!(
            LogFormat::parse("%(trace_id)s/%(span_id)s").unwrap(),
            LogFormat::Atoms(vec![Atom::TraceId, Atom::Literal("/".into()), Atom::SpanId])
        );
        assert_eq!(
            LogFormat::parse("%(zz)s"),
            Err(FormatError::UnknownAtom("zz".into()))
        );
        assert!(matches!(
            LogFormat::parse("%(h"),
            Err(FormatError::Unterminated(0))
        ));
    }
}
