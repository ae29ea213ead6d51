//! Helpers for the integration tests in `tests/`: locating external tools
//! and deciding whether a missing one skips a test or fails it (under CI it
//! always fails).

use std::path::PathBuf;

/// Whether missing external dependencies must fail tests instead of
/// skipping them (set by `scripts/test.sh` when `CI=true`).
pub fn deps_required() -> bool {
    std::env::var_os("LITEFS_REQUIRE_DEPS").is_some_and(|v| v == "1")
        || std::env::var_os("CI").is_some_and(|v| v == "true")
}

/// Finds an external tool from an environment variable or `PATH`. When it is
/// missing, panics under CI and returns `None` (after saying so) elsewhere.
pub fn tool(env_var: &str, name: &str) -> Option<PathBuf> {
    let found = std::env::var_os(env_var)
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join(name))
                    .find(|p| p.is_file())
            })
        });
    if found.is_none() {
        let msg = format!("{name} not found (set {env_var} or run scripts/install-test-deps.sh)");
        assert!(!deps_required(), "{msg}");
        eprintln!("SKIP: {msg}");
    }
    found
}
