//! What the test suites do on a machine without a GPU adapter: fail, saying how to get one,
//! unless `DLCLI_SKIP_GPU=1` asks to skip; a skip is then counted and printed past the test
//! harness's capture (which swallows a passing test's `eprintln!`), so it cannot go unseen.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The variable that turns "no adapter" from a failure into a counted skip.
pub const SKIP_GPU: &str = "DLCLI_SKIP_GPU";

static SKIPPED: AtomicUsize = AtomicUsize::new(0);

/// Called where `test` found no GPU adapter (`error` says why): panics with the way to get
/// one, or under `DLCLI_SKIP_GPU=1` returns after printing the skip and the count so far.
pub fn no_adapter(test: &str, error: &dyn std::fmt::Display) {
    if std::env::var(SKIP_GPU).as_deref() != Ok("1") {
        panic!(
            "{test}: no GPU adapter ({error}). Install one, on a machine without a GPU Mesa's lavapipe: \
             apt-get install mesa-vulkan-drivers; or set {SKIP_GPU}=1 to skip the GPU tests"
        );
    }
    let n = SKIPPED.fetch_add(1, Ordering::SeqCst) + 1;
    // Straight to the process's stderr: the harness captures only the print macros.
    let _ =
        writeln!(std::io::stderr(), "SKIPPED ({SKIP_GPU}=1): {test}: no GPU adapter; {n} GPU test(s) skipped so far");
}
