//! Release links only, on x86_64 Linux with glibc, where rustc links with its own lld: the
//! service's binary gets its hot code packed together and compact relocations. Both change
//! what the binary keeps resident, not what it does (bench/NOTES.md, issue #27):
//!
//! - `--symbol-ordering-file=link-order.txt`: the functions that run at start-up and under
//!   load, laid out first and together (written by `bench/link-order.sh` from a profile).
//!   The kernel maps code in 64 KB windows around each page run; spread over 15 MB of text,
//!   2 MB of hot code kept ~10 MB resident. A name the build does not have (the file predates
//!   a toolchain or dependency update) is skipped: a stale file costs memory, not correctness.
//! - `-z pack-relative-relocs` (RELR): the dynamic loader's relocation table shrinks from
//!   0.9 MB, read in full at every start, to 14 KB. Needs glibc 2.36 or later where it runs
//!   (Debian 12, the Dockerfile's base).
//!
//! Opting out of lld (`-C linker-features=-lld` in RUSTFLAGS) also opts out of these.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=link-order.txt");
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let var = |name: &str| env::var(name).unwrap_or_default();
    let lld = var("CARGO_CFG_TARGET_ARCH") == "x86_64"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && !var("CARGO_ENCODED_RUSTFLAGS").contains("linker-features=-lld");
    if var("PROFILE") != "release" || !lld {
        return;
    }
    let order = format!("{}/link-order.txt", var("CARGO_MANIFEST_DIR"));
    // Absent in cargo-chef's dependency-only skeleton (the Dockerfile's first build).
    if std::path::Path::new(&order).exists() {
        println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={order}");
        println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
}
