//! `module:callable`: how the application is named, as in gunicorn.

/// A parsed application reference: `"pkg.module:app"`, `"pkg.module:create_app()"`, or
/// `"pkg.module"` (which means `pkg.module:application`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppSpec {
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
    /// Split `FILE#NAME` and check that the file can be read.
    pub fn parse(path: &std::path::Path) -> Result<Self, String> {
        let text = path.to_string_lossy();
        let (file, name) = match text.rsplit_once('#') {
            Some((file, name)) if !name.is_empty() => (file.to_owned(), name.to_owned()),
            _ => (text.trim_end_matches('#').to_owned(), "main".to_owned()),
        };
        let file = std::path::PathBuf::from(file);
        std::fs::metadata(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
        Ok(Self { file, name })
    }
}
