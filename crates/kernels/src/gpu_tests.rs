//! How the test suites meet the GPU. Without an adapter a GPU test fails, saying how to get
//! one, unless `DLCLI_SKIP_GPU=1` asks to skip; a skip is then counted and printed past the
//! test harness's capture (which swallows a passing test's `eprintln!`), so it cannot go
//! unseen. And one `cargo test` covers both of wgpu's backends that run on a machine without a
//! GPU: each GPU test binary runs itself again on the GL backend ([`rerun_on_gl`]).

use std::io::Write;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The variable that turns "no adapter" from a failure into a counted skip.
pub const SKIP_GPU: &str = "DLCLI_SKIP_GPU";

/// Set in a test binary's run on the GL backend.
const GL_PASS: &str = "DLCLI_GL_PASS";

static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// Called where `test` found no GPU adapter (`error` says why): panics with the way to get
/// one, or under `DLCLI_SKIP_GPU=1` returns after printing the skip and the count so far.
pub fn no_adapter(test: &str, error: &dyn std::fmt::Display) {
    if std::env::var(SKIP_GPU).as_deref() != Ok("1") {
        let install = match std::env::var_os(GL_PASS) {
            Some(_) => {
                "the GL backend needs Mesa's EGL and llvmpipe: apt-get install libegl1 libegl-mesa0 libgl1-mesa-dri"
            }
            None => "on a machine without a GPU Mesa's lavapipe: apt-get install mesa-vulkan-drivers",
        };
        panic!("{test}: no GPU adapter ({error}). Install one, {install}; or set {SKIP_GPU}=1 to skip the GPU tests");
    }
    let n = SKIPPED.fetch_add(1, Ordering::SeqCst) + 1;
    // Straight to the process's stderr: the harness captures only the print macros.
    let _ =
        writeln!(std::io::stderr(), "SKIPPED ({SKIP_GPU}=1): {test}: no GPU adapter; {n} GPU test(s) skipped so far");
}

/// Runs the calling test binary again, every test but `this_test`, with wgpu limited to its
/// GL backend (`WGPU_BACKEND=gl`, and `DLCLI_ADAPTER=gl` so that `Gpu::open` takes nothing
/// else), its tests in parallel as cargo runs them; panics with the run's report unless every
/// test passes there. Returns at once inside that run. The GL backend is where wgpu goes when
/// a machine has no Vulkan driver; its one context is what several threads fight over.
pub fn rerun_on_gl(this_test: &str) {
    if std::env::var_os(GL_PASS).is_some() {
        return;
    }
    let binary = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(&binary)
        .args(["--skip", this_test])
        .env(GL_PASS, "1")
        .env("WGPU_BACKEND", "gl")
        .env("DLCLI_ADAPTER", "gl")
        .output()
        .expect("running the test binary again");
    let report = String::from_utf8_lossy(&out.stdout);
    let summary = report.lines().filter(|l| l.starts_with("test result:")).collect::<Vec<_>>().join("; ");
    assert!(
        out.status.success(),
        "{} on the GL backend: {summary}\n{report}\n{}",
        binary.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let _ = writeln!(std::io::stderr(), "{} on the GL backend: {summary}", binary.display());
}
