//! Finding the project's virtual environment.

use std::path::{Path, PathBuf};

use rag_core::{RagError, Result};

/// The workspace root this crate was built in (the fallback place to look for `.venv`).
pub const BUILD_WORKSPACE_ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");

/// Where `make setup` caches what it builds outside the repository (the venv, the ONNX export,
/// the local model): `$XDG_CACHE_HOME/rag`, else `~/.cache/rag`.
pub fn setup_cache_dir() -> Option<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(cache.join("rag"))
}

/// Finds the venv to start Python from, in order:
/// 1. `explicit` (a config setting or `--venv`),
/// 2. `RAG_VENV`, then `VIRTUAL_ENV` (an activated venv),
/// 3. `.venv` in the current directory or any ancestor,
/// 4. `.venv` at the workspace root this binary was built from.
///
/// Returns the canonical path of a directory holding `bin/python` and `pyvenv.cfg`.
pub fn find_venv(explicit: Option<&Path>) -> Result<PathBuf> {
    let mut tried = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        // An explicit setting is authoritative: do not silently fall back to something else.
        return check_venv(p).ok_or_else(|| {
            RagError::config(format!(
                "the configured venv {} has no bin/python and pyvenv.cfg: run `{}` or fix the setting",
                p.display(),
                crate::SETUP_COMMAND
            ))
        });
    }
    for var in ["RAG_VENV", "VIRTUAL_ENV"] {
        if let Some(v) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            candidates.push(PathBuf::from(v));
        }
    }
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(cwd.ancestors().map(|a| a.join(".venv")));
    }
    candidates.push(Path::new(BUILD_WORKSPACE_ROOT).join(".venv"));
    for c in candidates {
        if let Some(found) = check_venv(&c) {
            return Ok(found);
        }
        tried.push(c.display().to_string());
    }
    Err(RagError::config(format!(
        "no Python venv found (looked in: {}): run `{}` at the repository root to create .venv",
        tried.join(", "),
        crate::SETUP_COMMAND
    )))
}

fn check_venv(dir: &Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().ok()?;
    (dir.join("bin/python").exists() && dir.join("pyvenv.cfg").is_file()).then_some(dir)
}

/// The `version = X.Y.Z` line of a venv's `pyvenv.cfg`, if present.
pub fn venv_python_version(venv: &Path) -> Option<String> {
    let cfg = std::fs::read_to_string(venv.join("pyvenv.cfg")).ok()?;
    cfg.lines().find_map(|l| {
        let (k, v) = l.split_once('=')?;
        matches!(k.trim(), "version" | "version_info").then(|| v.trim().to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_venv_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let err = find_venv(Some(dir.path())).unwrap_err().to_string();
        assert!(err.contains("make setup"), "{err}");
        std::fs::create_dir_all(dir.path().join("bin")).unwrap();
        std::fs::write(dir.path().join("bin/python"), "").unwrap();
        std::fs::write(dir.path().join("pyvenv.cfg"), "home = /x\nversion = 3.11.7\n").unwrap();
        let found = find_venv(Some(dir.path())).unwrap();
        assert_eq!(found, dir.path().canonicalize().unwrap());
        assert_eq!(venv_python_version(&found).as_deref(), Some("3.11.7"));
    }
}
