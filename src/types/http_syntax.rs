//! The pieces of the HTTP/1.1 grammar (RFC 9110, RFC 9112) that the framing check needs,
//! as pure functions on one line or one value. No state: the server's framing check
//! decides where in the byte stream each applies.

/// `tchar` (RFC 9110 section 5.6.2): the characters of a token.
pub fn is_tchar(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'!' | b'#'
                | b'$'
                | b'%'
                | b'&'
                | b'\''
                | b'*'
                | b'+'
                | b'-'
                | b'.'
                | b'^'
                | b'_'
                | b'`'
                | b'|'
                | b'~'
        )
}

/// `token = 1*tchar`.
pub fn is_token(bytes: &[u8]) -> bool {
    !bytes.is_empty() && bytes.iter().all(|&b| is_tchar(b))
}

/// The three parts of a request line (RFC 9112 section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestLine<'a> {
    /// The method.
    pub method: &'a [u8],
    /// The request-target.
    pub target: &'a [u8],
    /// The HTTP version, e.g. `HTTP/1.1`.
    pub version: &'a [u8],
}

/// `method SP request-target SP HTTP-version`, split on single spaces; None for any other
/// shape (hyper refuses those itself).
pub fn request_line(line: &[u8]) -> Option<RequestLine<'_>> {
    let mut parts = line.split(|&b| b == b' ');
    let method = parts.next()?;
    let target = parts.next()?;
    let version = parts.next()?;
    if parts.next().is_some() || method.is_empty() || target.is_empty() {
        return None;
    }
    Some(RequestLine {
        method,
        target,
        version,
    })
}

/// gunicorn's default method rule: 3 to 20 characters of a token, none of them a lowercase
/// letter or `#` (`get`, `-bl` and `M#X` are refused; `PROPFIND` and `M-SEARCH` are not).
pub fn is_conventional_method(method: &[u8]) -> bool {
    (3..=20).contains(&method.len())
        && is_token(method)
        && !method.iter().any(|&b| b.is_ascii_lowercase() || b == b'#')
}

/// The four forms of request-target (RFC 9112 section 3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetForm {
    /// `/path?query`.
    Origin,
    /// `http://host/path`.
    Absolute,
    /// `host:port`, for CONNECT only.
    Authority,
    /// `*`, for server-wide OPTIONS only.
    Asterisk,
}

/// Which form `target` is written in. Anything that is not origin, absolute or asterisk
/// form is taken as authority form: that is how hyper reads it too.
pub fn target_form(target: &[u8]) -> TargetForm {
    if target == b"*" {
        TargetForm::Asterisk
    } else if target.starts_with(b"/") {
        TargetForm::Origin
    } else if target.windows(3).any(|w| w == b"://") {
        TargetForm::Absolute
    } else {
        TargetForm::Authority
    }
}

/// True when `method` may use a target in `form` (RFC 9112 sections 3.2.3 and 3.2.4):
/// authority form is for CONNECT and CONNECT takes nothing else; asterisk form is for
/// OPTIONS.
pub fn method_allows_form(method: &[u8], form: TargetForm) -> bool {
    let connect = method == b"CONNECT";
    match form {
        TargetForm::Authority => connect,
        TargetForm::Asterisk => method == b"OPTIONS",
        TargetForm::Origin | TargetForm::Absolute => !connect,
    }
}

/// `OWS`/`BWS`: spaces and tabs.
fn is_ows(byte: u8) -> bool {
    byte == b' ' || byte == b'\t'
}

fn skip_ows(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|&b| !is_ows(b))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

/// `bytes` without leading and trailing OWS.
pub fn trim_ows(bytes: &[u8]) -> &[u8] {
    let bytes = skip_ows(bytes);
    let end = bytes.iter().rposition(|&b| !is_ows(b)).map_or(0, |e| e + 1);
    &bytes[..end]
}

fn token_len(bytes: &[u8]) -> usize {
    bytes.iter().take_while(|&&b| is_tchar(b)).count()
}

/// The length of the `quoted-string` that `bytes` starts with (RFC 9110 section 5.6.4),
/// or None if it does not start with a complete one.
fn quoted_string_len(bytes: &[u8]) -> Option<usize> {
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let is_text = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
    let mut at = 1;
    while at < bytes.len() {
        match bytes[at] {
            b'"' => return Some(at + 1),
            b'\\' => {
                // quoted-pair: a backslash and one visible character, space or tab.
                if !bytes.get(at + 1).is_some_and(|&b| is_text(b)) {
                    return None;
                }
                at += 2;
            }
            b if is_text(b) => at += 1,
            _ => return None,
        }
    }
    None
}

/// The chunk size of a chunk-size line (without its CRLF), or None if the line breaks
/// RFC 9112 section 7.1:
///
/// ```text
/// chunk-size [ chunk-ext ]
/// chunk-size = 1*HEXDIG
/// chunk-ext  = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
/// chunk-ext-name = token ; chunk-ext-val = token / quoted-string
/// ```
///
/// So `5`, `0005`, `1A`, `5;ext`, `5 ;ext`, `5; a = "x;y"` pass; `6_0`, `-5`, `+5`, an
/// empty size, `;ext` alone, `0 ` (whitespace with no extension after it), a bare CR and
/// a size over 64 bits do not.
pub fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 {
        return None;
    }
    let mut size: u64 = 0;
    for &digit in &line[..digits] {
        let value = (digit as char).to_digit(16)? as u64;
        size = size.checked_mul(16)?.checked_add(value)?;
    }
    let mut rest = &line[digits..];
    while !rest.is_empty() {
        rest = skip_ows(rest);
        rest = rest.strip_prefix(b";")?;
        rest = skip_ows(rest);
        let name = token_len(rest);
        if name == 0 {
            return None;
        }
        rest = &rest[name..];
        let after_name = skip_ows(rest);
        if let Some(value) = after_name.strip_prefix(b"=") {
            let value = skip_ows(value);
            let len = match quoted_string_len(value) {
                Some(len) => len,
                None => token_len(value),
            };
            if len == 0 {
                return None;
            }
            rest = &value[len..];
        }
    }
    Some(size)
}

/// The name of a field line `name ":" OWS value OWS` (RFC 9112 section 5), or None if
/// the line is not one: no colon, a name that is not a token (also whitespace before the
/// colon, and obsolete line folding), or a control character in the value.
pub fn field_line_name(line: &[u8]) -> Option<&[u8]> {
    let colon = line.iter().position(|&b| b == b':')?;
    let name = &line[..colon];
    let value = &line[colon + 1..];
    let valid_value = value
        .iter()
        .all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f));
    (is_token(name) && valid_value).then_some(name)
}

/// True for a valid `Host` field value: `uri-host [ ":" port ]` (RFC 9112 section 3.2,
/// RFC 3986 section 3.2.2). The empty value is valid.
pub fn is_valid_host(value: &[u8]) -> bool {
    let (host, port) = if let Some(literal) = value.strip_prefix(b"[") {
        // IP-literal: an IPv6 address (or IPvFuture) in brackets.
        let Some(close) = literal.iter().position(|&b| b == b']') else {
            return false;
        };
        let inside = &literal[..close];
        let valid_inside = !inside.is_empty()
            && inside.iter().all(|&b| {
                b.is_ascii_hexdigit() || is_unreserved(b) || is_sub_delim(b) || b == b':'
            });
        if !valid_inside {
            return false;
        }
        (&[][..], &literal[close + 1..])
    } else {
        match value.iter().position(|&b| b == b':') {
            Some(colon) => (&value[..colon], &value[colon..]),
            None => (value, &[][..]),
        }
    };
    let valid_port = match port.strip_prefix(b":") {
        Some(digits) => digits.iter().all(u8::is_ascii_digit),
        None => port.is_empty(),
    };
    valid_port && is_reg_name(host)
}

fn is_unreserved(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(byte: u8) -> bool {
    matches!(
        byte,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )` (IPv4 addresses are reg-names
/// too).
fn is_reg_name(bytes: &[u8]) -> bool {
    let mut at = 0;
    while at < bytes.len() {
        let byte = bytes[at];
        if byte == b'%' {
            let escape = bytes.get(at + 1..at + 3);
            if !escape.is_some_and(|e| e.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            at += 3;
        } else if is_unreserved(byte) || is_sub_delim(byte) {
            at += 1;
        } else {
            return false;
        }
    }
    true
}

/// Request fields that may appear only once (RFC 9110 section 5.3: a field that is not a
/// list). A repeat makes the value ambiguous: which `Authorization` did a front proxy
/// check, which `Content-Type` will the app parse? `Host` and `Content-Length` have rules
/// of their own. Returns the field's index in a fixed list (below 32), for a bit set.
pub fn singleton_index(name: &[u8]) -> Option<usize> {
    const SINGLETONS: &[&[u8]] = &[
        b"content-type",
        b"authorization",
        b"proxy-authorization",
        b"range",
        b"if-range",
        b"if-modified-since",
        b"if-unmodified-since",
        b"max-forwards",
        b"referer",
        b"user-agent",
        b"from",
    ];
    SINGLETONS.iter().position(|s| name.eq_ignore_ascii_case(s))
}

/// Fields that must not be sent in a trailer section (RFC 9110 section 6.5.1): message
/// framing, routing, request modifiers, authentication and content processing. A
/// recipient that merged them into the header section would change the request after
/// the fact.
pub fn is_forbidden_trailer(name: &[u8]) -> bool {
    const FORBIDDEN: &[&[u8]] = &[
        b"transfer-encoding",
        b"content-length",
        b"host",
        b"te",
        b"trailer",
        b"connection",
        b"keep-alive",
        b"upgrade",
        b"content-type",
        b"content-encoding",
        b"content-range",
        b"authorization",
        b"proxy-authorization",
        b"cookie",
        b"expect",
        b"max-forwards",
        b"range",
        b"cache-control",
        b"pragma",
        b"if-match",
        b"if-none-match",
        b"if-modified-since",
        b"if-unmodified-since",
        b"if-range",
    ];
    FORBIDDEN.iter().any(|f| name.eq_ignore_ascii_case(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_follow_the_grammar() {
        let accepted: &[(&[u8], u64)] = &[
            (b"5", 5),
            (b"0", 0),
            (b"1A", 26),
            (b"1a", 26),
            (b"0005", 5),
            (b"00000000000000000000000000010", 16),
            (b"ffffffffffffffff", u64::MAX),
            (b"5;ext", 5),
            (b"5;ext=val", 5),
            (b"5 ;ext", 5),
            (b"5\t; ext = val", 5),
            (b"5;a=1;b;c=\"x;y \\\" z\"", 5),
            (b"5;ext=\"\"", 5),
        ];
        for (line, size) in accepted {
            assert_eq!(
                chunk_size(line),
                Some(*size),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let refused: &[&[u8]] = &[
            b"",
            b"6_0",
            b"-5",
            b"+5",
            b" 5",
            b"0x5",
            b";foo=bar",
            b"0 ",
            b"5\t",
            b"5 5",
            b"5;",
            b"5;ext ",
            b"5;=v",
            b"5;ext=",
            b"5;ext=a b",
            b"5;ext=\"open",
            b"5;ext=\"a\rb\"",
            b"5;e\rx",
            b"5\r",
            b"10000000000000000",
        ];
        for line in refused {
            assert_eq!(chunk_size(line), None, "{}", String::from_utf8_lossy(line));
        }
    }

    #[test]
    fn methods_follow_gunicorn_by_default() {
        for ok in [&b"GET"[..], b"PROPFIND", b"M-SEARCH", b"PATCH", b"X_Y"] {
            assert!(
                is_conventional_method(ok),
                "{}",
                String::from_utf8_lossy(ok)
            );
        }
        for bad in [
            &b"get"[..],
            b"Get",
            b"-bl",
            b"GE",
            b"M#X",
            b"ABCDEFGHIJKLMNOPQRSTU",
            b"G@T",
        ] {
            assert!(
                !is_conventional_method(bad),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn target_forms_and_their_methods() {
        assert_eq!(target_form(b"/a?b"), TargetForm::Origin);
        assert_eq!(target_form(b"*"), TargetForm::Asterisk);
        assert_eq!(target_form(b"http://h/x"), TargetForm::Absolute);
        assert_eq!(target_form(b"h:443"), TargetForm::Authority);
        assert!(method_allows_form(b"OPTIONS", TargetForm::Asterisk));
        assert!(!method_allows_form(b"GET", TargetForm::Asterisk));
        assert!(method_allows_form(b"CONNECT", TargetForm::Authority));
        assert!(!method_allows_form(b"GET", TargetForm::Authority));
        assert!(!method_allows_form(b"CONNECT", TargetForm::Origin));
        assert!(method_allows_form(b"GET", TargetForm::Absolute));
    }

    #[test]
    fn host_values() {
        for ok in [
            &b""[..],
            b"example.com",
            b"example.com:8080",
            b"127.0.0.1:80",
            b"[::1]",
            b"[::1]:8000",
            b"a_b.local",
            b"xn--bcher-kva.example",
            b"ex%41mple",
            b"host:",
        ] {
            assert!(is_valid_host(ok), "{}", String::from_utf8_lossy(ok));
        }
        for bad in [
            &b"a b"[..],
            b"a/b",
            b"user@host",
            b"host:80:80",
            b"host:8o",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"ex%4",
            b"h\xc3\xa9",
        ] {
            assert!(!is_valid_host(bad), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn field_lines() {
        assert_eq!(field_line_name(b"X-T: 1"), Some(&b"X-T"[..]));
        assert_eq!(field_line_name(b"X-T:"), Some(&b"X-T"[..]));
        assert_eq!(field_line_name(b"X-T : 1"), None);
        assert_eq!(field_line_name(b" folded"), None);
        assert_eq!(field_line_name(b"X-T: a\rb"), None);
        assert_eq!(field_line_name(b"no colon"), None);
    }

    #[test]
    fn request_lines() {
        let line = request_line(b"GET /x HTTP/1.1").unwrap();
        assert_eq!(
            (line.method, line.target, line.version),
            (&b"GET"[..], &b"/x"[..], &b"HTTP/1.1"[..])
        );
        assert_eq!(request_line(b"GET  /x HTTP/1.1"), None);
        assert_eq!(request_line(b"GET /x"), None);
    }
}
