//! `module:callable`: how the application is named, as in gunicorn; and
//! `file.ini#name` for PasteDeploy.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A parsed application reference: `"pkg.module:app"`, `"pkg.module:create_app()"`, or
/// `"pkg.module"` (which means `pkg.module:application`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AppSpec {
    /// The spec as written (trimmed), for messages and spans.
    text: String,
    /// The module to import.
    pub module: String,
    /// A dotted attribute path or a call expression evaluated in the module's namespace.
    pub expression: String,
}

impl AppSpec {
    /// Parse and check the shape of a spec; the import itself happens later.
    pub fn parse(spec: &str) -> Result<Self, String> {
        let (module, expression) = match spec.split_once(':') {
            Some((module, expression)) => (module.trim(), expression.trim()),
            None => (spec.trim(), "application"),
        };
        let is_dotted_name = |s: &str| {
            !s.is_empty()
                && s.split('.').all(|part| {
                    let mut chars = part.chars();
                    matches!(chars.next(), Some(c) if c.is_alphabetic() || c == '_')
                        && chars.all(|c| c.is_alphanumeric() || c == '_')
                })
        };
        if !is_dotted_name(module) {
            return Err(format!(
                "{spec:?} is not \"module:callable\" (module {module:?} is not a dotted name)"
            ));
        }
        if expression.is_empty() {
            return Err(format!("{spec:?} names no callable after ':'"));
        }
        Ok(Self {
            text: spec.trim().to_owned(),
            module: module.to_owned(),
            expression: expression.to_owned(),
        })
    }

    /// True when the expression is a plain attribute path (no call to evaluate).
    pub fn is_attribute_path(&self) -> bool {
        self.expression
            .chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '.')
    }
}

impl TryFrom<String> for AppSpec {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        Self::parse(&text)
    }
}

impl From<AppSpec> for String {
    fn from(spec: AppSpec) -> String {
        spec.to_string()
    }
}

impl fmt::Display for AppSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::AppSpec;

    #[test]
    fn parses_gunicorn_forms() {
        let spec = AppSpec::parse("app.wsgi:application").unwrap();
        assert_eq!(
            (spec.module.as_str(), spec.expression.as_str()),
            ("app.wsgi", "application")
        );
        assert!(spec.is_attribute_path());
        let spec = AppSpec::parse("app").unwrap();
        assert_eq!(spec.expression, "application");
        let spec = AppSpec::parse("factory:create_app(debug=False)").unwrap();
        assert!(!spec.is_attribute_path());
        assert!(AppSpec::parse("not a module:app").is_err());
        assert!(AppSpec::parse("mod:").is_err());
    }
}

/// `[app] paste = "production.ini#main"`: a PasteDeploy file and the app section name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasteSpec {
    /// The `.ini` file (absolute once resolved against the config file).
    pub file: std::path::PathBuf,
    /// The `[app:NAME]`/`[pipeline:NAME]`/`[composite:NAME]` to load; default `main`.
    pub name: String,
}

impl PasteSpec {
    /// Split `FILE#NAME` (the file is checked at start-up, not here).
    pub fn split(path: &std::path::Path) -> Self {
        let text = path.to_string_lossy();
        let (file, name) = match text.rsplit_once('#') {
            Some((file, name)) if !name.is_empty() => (file.to_owned(), name.to_owned()),
            _ => (text.trim_end_matches('#').to_owned(), "main".to_owned()),
        };
        Self {
            file: std::path::PathBuf::from(file),
            name,
        }
    }
}

impl fmt::Display for PasteSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.file.display(), self.name)
    }
}
