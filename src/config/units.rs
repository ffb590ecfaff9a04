//! Small value types used by the config: byte sizes and "one or many" lists.

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A size in bytes, written as an integer or a string with a unit:
/// `8192`, `"64KiB"`, `"10MB"`, `"1GiB"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size as a `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }

    /// Parse `"64KiB"`-style strings. Decimal (`KB`, `MB`, `GB`) and binary (`KiB`,
    /// `MiB`, `GiB`) units are accepted; a bare number is bytes.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| {
            format!("invalid size {text:?}: expected e.g. 8192, \"64KiB\", \"10MB\"")
        })?;
        let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "kb" | "k" => 1_000,
            "kib" => 1 << 10,
            "mb" | "m" => 1_000_000,
            "mib" => 1 << 20,
            "gb" | "g" => 1_000_000_000,
            "gib" => 1 << 30,
            other => return Err(format!("invalid size unit {other:?} in {text:?}")),
        };
        number
            .checked_mul(multiplier)
            .map(ByteSize)
            .ok_or_else(|| format!("size {text:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u64(self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = ByteSize;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as 8192 or \"64KiB\"")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom("a size cannot be negative"))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                ByteSize::parse(v).map_err(E::custom)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Accept either a single string or a list of strings (`bind = "x"` or `bind = ["x", "y"]`),
/// so environment variables such as `GATEWAY_SERVER__BIND=0.0.0.0:8000` work unquoted.
pub fn one_or_many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<String, Error = String>,
{
    OneOrMany::deserialize(deserializer)?
        .into_vec()
        .into_iter()
        .map(|text| T::try_from(text).map_err(de::Error::custom))
        .collect()
}

/// A string or a list of strings, as written in TOML or a variable.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// `key = "x"`.
    One(String),
    /// `key = ["x", "y"]`.
    Many(Vec<String>),
}

impl OneOrMany {
    /// The strings, one or many.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(one) => vec![one],
            OneOrMany::Many(many) => many,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ByteSize;

    #[test]
    fn parses_units() {
        assert_eq!(ByteSize::parse("8192"), Ok(ByteSize(8192)));
        assert_eq!(ByteSize::parse("64KiB"), Ok(ByteSize(65536)));
        assert_eq!(ByteSize::parse("10MB"), Ok(ByteSize(10_000_000)));
        assert_eq!(ByteSize::parse("1 GiB"), Ok(ByteSize(1 << 30)));
        assert!(ByteSize::parse("ten").is_err());
        assert!(ByteSize::parse("5XB").is_err());
    }
}

/// A worker count: a number, or `"auto"` for one per available core.
pub fn worker_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Count {
        Number(usize),
        Text(String),
    }
    match Count::deserialize(deserializer)? {
        Count::Number(n) => Ok(n),
        Count::Text(text) if text == "auto" => {
            Ok(std::thread::available_parallelism().map_or(1, |n| n.get()))
        }
        Count::Text(text) => text
            .parse()
            .map_err(|_| de::Error::custom(format!("expected a number or \"auto\", got {text:?}"))),
    }
}

/// Durations written as a humantime string (`"30s"`, `"500ms"`, `"2m"`) or as a number of
/// seconds (`30`, as in gunicorn's settings).
pub mod duration {
    use std::fmt;
    use std::time::Duration;

    use serde::{de, Deserializer, Serializer};

    /// Serialize as a humantime string.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer
            .serialize_str(&humantime_serde::re::humantime::format_duration(*value).to_string())
    }

    /// Deserialize from a humantime string or a number of seconds.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        struct Visitor;
        impl de::Visitor<'_> for Visitor {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\" or a number of seconds")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                Ok(Duration::from_secs(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                u64::try_from(v)
                    .map(Duration::from_secs)
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Duration::try_from_secs_f64(v).map_err(|e| E::custom(e.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                humantime_serde::re::humantime::parse_duration(v)
                    .map_err(|e| E::custom(format!("invalid duration {v:?}: {e}")))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}
