//! Where configuration values come from besides the file: `GATEWAY_*` variables and
//! command-line flags, as figment providers whose values say their own name
//! (`GATEWAY_SERVER__BIND`, `--bind`) in error messages and in `wsgi-gateway config`.

use figment::value::{Dict, Map, Value};
use figment::{Error, Metadata, Profile, Provider};

/// The prefix of configuration variables.
pub(super) const ENV_PREFIX: &str = "GATEWAY_";

/// Variables with the prefix that are not configuration keys.
const NOT_KEYS: &[&str] = &["GATEWAY_CONFIG", "GATEWAY_TEST_VENV"];

/// `GATEWAY_<SECTION>__<KEY>` variables (nested keys joined with `__`).
pub(super) struct Variables;

impl Variables {
    fn env() -> figment::providers::Env {
        figment::providers::Env::prefixed(ENV_PREFIX)
            .split("__")
            .filter(|key| key.as_str().contains('.'))
    }
}

impl Provider for Variables {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable").interpolater(|_: &Profile, keys: &[&str]| {
            let keys: Vec<String> = keys.iter().map(|k| k.to_ascii_uppercase()).collect();
            format!("{ENV_PREFIX}{}", keys.join("__"))
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        Self::env().data()
    }
}

/// `GATEWAY_*` variables that set no key: one `_` where `__` was meant
/// (`GATEWAY_SERVER_THREADS`), each with the spelling that would work.
pub fn unused_variables() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with(ENV_PREFIX) && !NOT_KEYS.contains(&name.as_str()))
        .filter(|name| !name[ENV_PREFIX.len()..].contains("__"))
        .map(|name| {
            let rest = &name[ENV_PREFIX.len()..];
            let hint = match rest.split_once('_') {
                Some((section, key)) => format!(", e.g. {ENV_PREFIX}{section}__{key}"),
                None => String::new(),
            };
            format!("{name} sets no configuration key: nested keys are joined with __{hint}")
        })
        .collect()
}

/// One value given as a command-line flag.
#[derive(Clone, Debug)]
pub struct Flag {
    /// The flag as typed (`--bind`).
    pub flag: &'static str,
    /// The key it sets (`server.bind`).
    pub key: &'static str,
    /// The value.
    pub value: Value,
}

/// Values given as command-line flags; they override every other source.
#[derive(Clone, Debug, Default)]
pub struct Flags(pub Vec<Flag>);

impl Flags {
    /// Set `key` from `flag`.
    pub fn set(&mut self, flag: &'static str, key: &'static str, value: impl Into<Value>) {
        self.0.push(Flag {
            flag,
            key,
            value: value.into(),
        });
    }

    /// The flag that set `key`, if one did.
    pub fn flag_for(&self, key: &str) -> Option<&'static str> {
        self.0
            .iter()
            .rev()
            .find(|flag| flag.key == key || key.starts_with(&format!("{}.", flag.key)))
            .map(|flag| flag.flag)
    }
}

impl Provider for Flags {
    fn metadata(&self) -> Metadata {
        let flags = self.clone();
        Metadata::named("command-line flag").interpolater(move |_: &Profile, keys: &[&str]| {
            let key = keys.join(".");
            flags.flag_for(&key).map_or(key, str::to_owned)
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let mut dict = Dict::new();
        for flag in &self.0 {
            if let Value::Dict(_, nested) = figment::util::nest(flag.key, flag.value.clone()) {
                merge(&mut dict, nested);
            }
        }
        Ok(Profile::Global.collect(dict))
    }
}

/// Merge `from` into `into`, tables recursively, later values winning.
fn merge(into: &mut Dict, from: Dict) {
    for (key, value) in from {
        match (into.get_mut(&key), value) {
            (Some(Value::Dict(_, existing)), Value::Dict(_, nested)) => merge(existing, nested),
            (_, value) => {
                into.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_nest_their_keys_and_name_themselves() {
        let mut flags = Flags::default();
        flags.set("--threads", "server.threads", 8);
        flags.set("--bind", "server.bind", vec!["127.0.0.1:9000".to_owned()]);
        flags.set("--log-level", "telemetry.log_level", "debug");
        let data = flags.data().unwrap();
        let dict = &data[&Profile::Global];
        let Some(Value::Dict(_, server)) = dict.get("server") else {
            panic!("{dict:?}")
        };
        assert!(server.contains_key("threads") && server.contains_key("bind"));
        assert_eq!(
            flags
                .metadata()
                .interpolate(&Profile::Global, &["server", "bind"]),
            "--bind"
        );
        assert_eq!(
            Variables
                .metadata()
                .interpolate(&Profile::Global, &["server", "bind"]),
            "GATEWAY_SERVER__BIND"
        );
    }
}
