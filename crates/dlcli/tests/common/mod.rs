//! What the binary's end-to-end tests share: running it, reading its output, a fresh
//! directory per test.
#![allow(dead_code)] // each test file uses its own part of it

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The binary run from the repository root with `args`.
pub fn dlcli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dlcli"))
        .args(args)
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."))
        .output()
        .expect("the dlcli binary runs")
}

pub fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// A clean failure: non-zero exit, the expected words on stderr, no panic.
pub fn fails_with(out: &Output, words: &[&str]) {
    let (stdout, stderr) = text(out);
    assert!(!out.status.success(), "expected a failure; stdout:\n{stdout}");
    assert!(!stderr.contains("panicked"), "a panic:\n{stderr}");
    for w in words {
        assert!(stderr.contains(w), "stderr lacks {w:?}:\n{stderr}");
    }
}

/// An empty directory for `test` under the system's temporary directory.
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dlcli-test-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The values of a JSON array of numbers.
pub fn numbers(v: &serde_json::Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}
