//! Escaping of client-controlled text in access log lines, as nginx does it.
//!
//! A `"` in a User-Agent must not close the quoted field it is written in, or a client
//! could forge a status, a size or a whole referer of its own in combined format; a
//! newline could forge a whole line. So every byte that is not printable ASCII, the
//! quote and the backslash (which would make the escape ambiguous) become `\xHH`, with
//! the upper-case hex digits nginx uses: `"` is written `\x22`, `\` is `\x5C`.

/// Append `bytes` to `line`, escaping what could break the line's fields.
pub(super) fn push_escaped(line: &mut String, bytes: &[u8]) {
    if !bytes.iter().copied().any(needs_escape) {
        // Printable ASCII only: valid UTF-8 as it stands.
        line.push_str(std::str::from_utf8(bytes).expect("printable ASCII"));
        return;
    }
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    line.reserve(bytes.len() + 16);
    for &byte in bytes {
        if needs_escape(byte) {
            line.push_str("\\x");
            line.push(HEX[usize::from(byte >> 4)] as char);
            line.push(HEX[usize::from(byte & 0xF)] as char);
        } else {
            line.push(byte as char);
        }
    }
}

fn needs_escape(byte: u8) -> bool {
    !(0x20..0x7f).contains(&byte) || byte == b'"' || byte == b'\\'
}

#[cfg(test)]
mod tests {
    use super::push_escaped;

    fn escaped(bytes: &[u8]) -> String {
        let mut line = String::new();
        push_escaped(&mut line, bytes);
        line
    }

    #[test]
    fn escapes_quotes_backslashes_and_bytes_outside_printable_ascii() {
        assert_eq!(escaped(b"curl/8.5.0 (x86_64)"), "curl/8.5.0 (x86_64)");
        assert_eq!(escaped(b"a\"b"), r"a\x22b");
        assert_eq!(escaped(b"a\\x22"), r"a\x5Cx22");
        assert_eq!(escaped(b"\t\r\n\x7f\xff\x00"), r"\x09\x0D\x0A\x7F\xFF\x00");
        assert_eq!(escaped("é".as_bytes()), r"\xC3\xA9");
        assert_eq!(escaped(b""), "");
    }
}
