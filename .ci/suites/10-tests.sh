#!/usr/bin/env bash
# The README's test command (every crate; a failure does not stop the other tests).
set -euo pipefail
cargo test --workspace --no-fail-fast
