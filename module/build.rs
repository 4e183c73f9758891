// Link settings for the PAM module and its direct library (the cdylibs;
// direct/build.rs includes this file).
//
// A build script runs on the build machine: what it can learn about glibc
// is the build machine's. So packed relocations are used only for a native
// build (target = host), where that glibc is the one the module will run
// with (or the same release's, for `make deb`). Cross builds (`make
// cross`) do without: their target's glibc is not known here, and Debian
// 12's aarch64 linker does not pack them anyway (BENCHMARKS.md).

use std::process::Command;

fn main() {
    // This file is also direct/build.rs's (it includes it): both paths,
    // relative to either package.
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=../module/build.rs");
    println!("cargo:rerun-if-env-changed=PAM_GATEWAY_NO_RELR");
    println!("cargo:rerun-if-env-changed=PAM_GATEWAY_SHARED_LIBGCC");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let gnu_linux = var("CARGO_CFG_TARGET_OS") == "linux" && var("CARGO_CFG_TARGET_ENV") == "gnu";
    let native = !var("TARGET").is_empty() && var("TARGET") == var("HOST");
    // Packed relative relocations (DT_RELR): the module's thousands of
    // R_X86_64_RELATIVE entries of 24 bytes each become a small bitmap: a
    // smaller module, and less for the dynamic loader to read at every
    // dlopen (figures: BENCHMARKS.md). glibc reads DT_RELR since 2.36, and ld then
    // marks the module as needing GLIBC_ABI_DT_RELR, so an older glibc
    // refuses to load it with a clear message (and dpkg-shlibdeps makes the
    // .deb depend on libc6 >= 2.36). PAM_GATEWAY_NO_RELR=1 turns it off,
    // e.g. to build on Debian 12 for an older release.
    if gnu_linux && native && var("PAM_GATEWAY_NO_RELR").is_empty() && host_glibc() >= Some((2, 36))
    {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,pack-relative-relocs");
    }
    // The unwinder linked in (gcc's libgcc_eh.a, as `gcc -static-libgcc`
    // does) instead of loading libgcc_s.so.1 into every sshd, su and sudo
    // that loads the module. std's unwind crate asks for `-lgcc_s`; this
    // archive comes first on the link line, so it resolves the _Unwind_*
    // symbols and `--as-needed` drops libgcc_s. Loading libgcc_s (and its
    // constructor's CPU probes: `cpuid` traps to the hypervisor in a VM)
    // was most of what an empty Rust module costs a login over pam_permit
    // (BENCHMARKS.md). The unwinder's symbols stay local: a cdylib exports
    // only the pam_sm_* hooks. Panics still unwind to pam-bindings'
    // catch_unwind (tests/pam_real.rs,
    // a_panic_unwinds_to_pam_abort_and_the_application_lives_on). Both gcc
    // (native and Debian's cross compilers) ship libgcc_eh.a next to
    // libgcc.a, on the driver's own search path.
    // PAM_GATEWAY_SHARED_LIBGCC=1 links libgcc_s as before.
    // Loaded once per process: libpam dlcloses a module at every pam_end,
    // and a long-lived host (a display manager, a daemon that links libpam)
    // would map, relocate and set it up again for every login -- about
    // 0.19 ms each (BENCHMARKS.md). Marked NODELETE, the module stays, and
    // so does its one-time state (the direct library's entry points,
    // src/direct.rs). Applies to pam_gateway_direct.so too (its build
    // script is this file), which the module loads with RTLD_NODELETE
    // anyway.
    if var("CARGO_CFG_TARGET_OS") == "linux" {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    }
    if gnu_linux && var("PAM_GATEWAY_SHARED_LIBGCC").is_empty() {
        println!("cargo:rustc-link-lib=static:+verbatim,-bundle=libgcc_eh.a");
    }
    // The code a login runs, placed together at the start of the module's
    // text (module/hot-text.ld, made by `make hot-text` from callgrind runs
    // of `make bench`). By default it lies spread over the whole file, and
    // the first touch of each 64 KB window of it is a page fault in the
    // PAM process. Placed together it spans far fewer such windows: less
    // CPU and less resident memory per login (figures: BENCHMARKS.md,
    // session 10). The file is a linker script that only adds one output
    // section (INSERT), which lld and GNU ld (the cross builds) both read;
    // its names are patterns, so it holds across rebuilds and targets.
    // Release builds of the module only; PAM_GATEWAY_NO_HOT_TEXT=1 links
    // without it.
    println!("cargo:rerun-if-env-changed=PAM_GATEWAY_NO_HOT_TEXT");
    if var("CARGO_PKG_NAME") == "pam-gateway-module"
        && var("PROFILE") == "release"
        && var("CARGO_CFG_TARGET_OS") == "linux"
        && var("PAM_GATEWAY_NO_HOT_TEXT").is_empty()
    {
        let script = std::path::Path::new(&var("CARGO_MANIFEST_DIR")).join("hot-text.ld");
        println!("cargo:rerun-if-changed={}", script.display());
        println!("cargo:rustc-cdylib-link-arg=-Wl,-T,{}", script.display());
    }
}

/// The build machine's glibc version, from `getconf GNU_LIBC_VERSION`
/// ("glibc 2.36").
fn host_glibc() -> Option<(u32, u32)> {
    let out = Command::new("getconf")
        .arg("GNU_LIBC_VERSION")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.trim().strip_prefix("glibc ")?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}
