//! What every mapping rule shares: where paths are written relative to, how an entry
//! names the sections it came from, and the list of what was not translated natively.

use std::path::{Component, Path, PathBuf};

use super::description::{Logging, Origins};

/// The conversion under way.
pub(super) struct Context<'a> {
    /// The converted `.ini` (absolute).
    pub main_file: &'a Path,
    /// The folder the output's relative paths start from.
    pub out_dir: PathBuf,
    /// The folder relative paths of the `.ini` start from (the current one, as for
    /// PasteDeploy run from here).
    pub cwd: PathBuf,
    /// `[loggers]` of the main file.
    pub logging: Option<&'a Logging>,
    /// `[section]: what`, for stderr (each is also a comment in the output): what stays
    /// in Python, was not translated, or may behave differently.
    pub warnings: Vec<String>,
}

impl<'a> Context<'a> {
    /// `path` as written in the output: relative to its folder when inside it.
    pub(super) fn relative(&self, path: &Path) -> String {
        let path = normalize(&self.cwd.join(path));
        match path.strip_prefix(&self.out_dir) {
            Ok(rest) if rest.as_os_str().is_empty() => ".".to_owned(),
            Ok(rest) => rest.display().to_string(),
            Err(_) => path.display().to_string(),
        }
    }

    /// `from [filter:gzip] (use = egg:Paste#gzip)`; sections followed through `use`
    /// are chained, and a file other than the converted one is named.
    pub(super) fn provenance(&self, origins: &Origins) -> String {
        let mut parts = Vec::new();
        for origin in &origins.origin {
            let mut part = format!("[{}]", origin.section);
            if origin.file != self.main_file {
                part.push_str(&format!(" of {}", self.relative(&origin.file)));
            }
            parts.push(part);
        }
        if parts.is_empty() {
            return format!("from {}", self.main_file.display());
        }
        let mut text = format!("from {}", parts.join(" -> "));
        if let Some(uses) = origins.origin.last().and_then(|o| o.use_.as_deref()) {
            if !uses.starts_with("config:") {
                text.push_str(&format!(" (use = {uses})"));
            }
        }
        text
    }

    /// Record what stays in Python (or was not translated at all), once, for stderr,
    /// and return the comment line for the entry.
    pub(super) fn not_native(&mut self, origins: &Origins, what: &str) -> String {
        self.report(origins, what);
        format!("NOT NATIVE: {what}")
    }

    /// Record a way the converted entry may behave differently, once, for stderr, and
    /// return the comment line for the entry.
    pub(super) fn differs(&mut self, origins: &Origins, what: &str) -> String {
        self.report(origins, what);
        format!("DIFFERS: {what}")
    }

    fn report(&mut self, origins: &Origins, what: &str) {
        let section = origins
            .first()
            .map_or_else(|| "?".to_owned(), |o| format!("[{}]", o.section));
        let line = format!("{section}: {what}");
        if !self.warnings.contains(&line) {
            self.warnings.push(line);
        }
    }
}

/// `a/./b/../c` as `a/c`, lexically.
pub(super) fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// PasteDeploy's `asbool` (paste.deploy.converters): true/yes/on/y/t/1 and their
/// opposites, any case; None for anything else.
pub(super) fn asbool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "y" | "t" | "1" => Some(true),
        "false" | "no" | "off" | "n" | "f" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_relative_to_the_output_when_inside_it() {
        let ctx = Context {
            main_file: Path::new("/srv/site/production.ini"),
            out_dir: PathBuf::from("/srv/site"),
            cwd: PathBuf::from("/home/me"),
            logging: None,
            warnings: Vec::new(),
        };
        assert_eq!(ctx.relative(Path::new("/srv/site")), ".");
        assert_eq!(ctx.relative(Path::new("/srv/site/./static/../css")), "css");
        assert_eq!(ctx.relative(Path::new("/etc/htpasswd")), "/etc/htpasswd");
        // Relative paths of the .ini are the working folder's, as for PasteDeploy.
        assert_eq!(ctx.relative(Path::new("static")), "/home/me/static");
    }

    #[test]
    fn booleans_as_paste_reads_them() {
        assert_eq!(asbool(" True "), Some(true));
        assert_eq!(asbool("off"), Some(false));
        assert_eq!(asbool("maybe"), None);
    }
}
