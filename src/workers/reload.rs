//! `--reload` (development): watch the application's Python files and the config file,
//! and on a change ask the supervisor for a rolling reload exactly as `SIGHUP` does, by
//! sending this process `SIGHUP`. A broken edit therefore keeps the old workers serving
//! and its traceback is logged, as for any reload.
//!
//! Files are polled (their size and modification time) once a second; no inotify
//! limits, and it works on every file system a development checkout lives on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the files are looked at.
const INTERVAL: Duration = Duration::from_secs(1);
/// Folders never watched: virtualenvs, caches, VCS metadata.
const SKIPPED: [&str; 8] = [
    ".git",
    ".hg",
    "__pycache__",
    "node_modules",
    ".venv",
    "venv",
    "site-packages",
    ".tox",
];
/// At most this many files are watched (a mistaken root like `/` stays cheap).
const MAX_FILES: usize = 20_000;

/// Watch `.py` files under `roots` and the file `config`, on a thread of its own, for
/// the life of the process.
pub fn watch(roots: Vec<PathBuf>, config: Option<PathBuf>) {
    let spawned = std::thread::Builder::new()
        .name("reload".into())
        .spawn(move || {
            let mut known = snapshot(&roots, config.as_deref());
            tracing::info!(
                files = known.len(),
                "--reload: watching the app's Python files and the config (development only)"
            );
            loop {
                std::thread::sleep(INTERVAL);
                let now = snapshot(&roots, config.as_deref());
                if let Some(changed) = first_change(&known, &now) {
                    tracing::info!(
                        "--reload: {} changed; reloading the workers",
                        changed.display()
                    );
                    // SAFETY: kill(2) on this very process with a signal the
                    // supervisor handles (a rolling reload).
                    unsafe {
                        libc::kill(libc::getpid(), libc::SIGHUP);
                    }
                }
                known = now;
            }
        });
    if let Err(error) = spawned {
        tracing::warn!("--reload: cannot start the watcher: {error}");
    }
}

type Stamp = (u64, Option<SystemTime>);

fn snapshot(roots: &[PathBuf], config: Option<&Path>) -> HashMap<PathBuf, Stamp> {
    let mut files = HashMap::new();
    if let Some(config) = config {
        if let Ok(metadata) = std::fs::metadata(config) {
            files.insert(
                config.to_path_buf(),
                (metadata.len(), metadata.modified().ok()),
            );
        }
    }
    let mut folders: Vec<PathBuf> = roots.to_vec();
    while let Some(folder) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&folder) else {
            continue;
        };
        for entry in entries.flatten() {
            if files.len() >= MAX_FILES {
                return files;
            }
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if kind.is_dir() {
                if !SKIPPED.contains(&name.as_ref()) && !name.starts_with('.') {
                    folders.push(path);
                }
            } else if name.ends_with(".py") {
                if let Ok(metadata) = entry.metadata() {
                    files.insert(path, (metadata.len(), metadata.modified().ok()));
                }
            }
        }
    }
    files
}

/// A file added, removed or changed between two snapshots.
fn first_change<'a>(
    before: &'a HashMap<PathBuf, Stamp>,
    after: &'a HashMap<PathBuf, Stamp>,
) -> Option<&'a Path> {
    after
        .iter()
        .find(|(path, stamp)| before.get(*path) != Some(stamp))
        .map(|(path, _)| path.as_path())
        .or_else(|| {
            before
                .keys()
                .find(|path| !after.contains_key(*path))
                .map(PathBuf::as_path)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_python_files_change_and_skips_virtualenvs() {
        let root = std::env::temp_dir().join(format!("reload-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("pkg")).unwrap();
        std::fs::create_dir_all(root.join(".venv/lib")).unwrap();
        std::fs::write(root.join("pkg/app.py"), "x = 1\n").unwrap();
        std::fs::write(root.join(".venv/lib/dep.py"), "y = 1\n").unwrap();
        std::fs::write(root.join("notes.txt"), "n\n").unwrap();
        let before = snapshot(std::slice::from_ref(&root), None);
        assert_eq!(before.len(), 1, "{before:?}");
        std::fs::write(root.join("pkg/app.py"), "x = 22\n").unwrap();
        let after = snapshot(std::slice::from_ref(&root), None);
        assert_eq!(
            first_change(&before, &after),
            Some(root.join("pkg/app.py").as_path())
        );
        std::fs::remove_file(root.join("pkg/app.py")).unwrap();
        let gone = snapshot(std::slice::from_ref(&root), None);
        assert!(first_change(&after, &gone).is_some());
        let _ = std::fs::remove_dir_all(&root);
    }
}
