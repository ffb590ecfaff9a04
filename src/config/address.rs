//! `server.bind` entries, parsed when the configuration is loaded.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One listen address: `"HOST:PORT"` or `"unix:/path/to.sock"`. The host is resolved
/// when the socket is bound, not here.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BindAddress {
    /// A TCP `host:port`.
    Tcp(String),
    /// A unix socket path (`unix:/run/app.sock`).
    Unix(PathBuf),
}

impl BindAddress {
    /// Check the shape of a bind string without resolving it.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("{text:?} names no socket path"));
            }
            return Ok(BindAddress::Unix(PathBuf::from(path)));
        }
        let (host, port) = text
            .rsplit_once(':')
            .ok_or_else(|| format!("{text:?} is not HOST:PORT or unix:PATH"))?;
        if host.is_empty() {
            return Err(format!(
                "{text:?} has no host; use 0.0.0.0:PORT or [::]:PORT"
            ));
        }
        port.parse::<u16>()
            .map_err(|_| format!("{text:?}: {port:?} is not a port number"))?;
        Ok(BindAddress::Tcp(text.to_owned()))
    }
}

impl TryFrom<String> for BindAddress {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<BindAddress> for String {
    fn from(address: BindAddress) -> String {
        address.to_string()
    }
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddress::Tcp(text) => f.write_str(text),
            BindAddress::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// A unix socket file's permission bits, written as an octal string (`"660"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct FileMode(pub u32);

impl TryFrom<String> for FileMode {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        u32::from_str_radix(text.trim_start_matches("0o"), 8)
            .ok()
            .filter(|mode| *mode <= 0o777)
            .map(FileMode)
            .ok_or_else(|| format!("{text:?} is not an octal file mode such as \"660\""))
    }
}

impl From<FileMode> for String {
    fn from(mode: FileMode) -> String {
        format!("{:o}", mode.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tcp_and_unix_addresses() {
        assert_eq!(
            BindAddress::parse("127.0.0.1:8000"),
            Ok(BindAddress::Tcp("127.0.0.1:8000".into()))
        );
        assert_eq!(
            BindAddress::parse("unix:/run/a.sock"),
            Ok(BindAddress::Unix("/run/a.sock".into()))
        );
        assert!(BindAddress::parse(":8000").is_err());
        assert!(BindAddress::parse("localhost:http").is_err());
        assert!(BindAddress::parse("unix:").is_err());
        assert_eq!(FileMode::try_from("0o640".to_owned()), Ok(FileMode(0o640)));
        assert!(FileMode::try_from("999".to_owned()).is_err());
    }
}
