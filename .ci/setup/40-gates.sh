# Sourced by .ci/run (set -euo pipefail, at the repository's root): the formatting and lint gates,
# before any test runs.
# A clean clone builds every crate once: incremental state would only take disk (a CI
# machine's disk once filled up linking the test binaries).
export CARGO_INCREMENTAL=0
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
