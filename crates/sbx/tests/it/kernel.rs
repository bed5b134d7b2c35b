//! The microVM guest kernel on first use: `sbx` finds a build already in the cache, tells a stale one from a current
//! one, and on a host without hardware virtualization refuses a microVM before building anything.

use std::path::{Path, PathBuf};

use crate::context::TestContext;

/// The config fragment the kernel is built with (the same file sbx embeds).
fn fragment() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sbx-vmm/guest/kernel.config");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A cache with one build recording `config`, linked as `<cache>/vmlinux` the way the build links it.
fn cached_build(cache: &Path, config: &str) -> PathBuf {
    let dir = cache.join("linux-source-6.1-00000000000000aa");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("vmlinux"), b"\x7fELF placeholder").unwrap();
    std::fs::write(dir.join("config"), config).unwrap();
    let link = cache.join("vmlinux");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(dir.join("vmlinux"), &link).unwrap();
    link
}

fn kernel_context(cache: &Path) -> TestContext {
    let mut ctx = TestContext::new();
    ctx.set_env("SBX_KERNEL_CACHE", cache.to_str().unwrap());
    ctx.set_env("SBX_KERNEL", "");
    ctx
}

fn doctor(ctx: &TestContext) -> serde_json::Value {
    serde_json::from_str(&ctx.ok(&["doctor", "--json"])).unwrap()
}

#[test]
fn doctor_finds_the_cached_guest_kernel_and_calls_a_stale_one_out_of_date() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("kernel-cache");
    let ctx = kernel_context(&cache);
    let packaged = Path::new("/usr/libexec/sbx/vmlinux").is_file();

    let missing = doctor(&ctx);
    if !packaged {
        let err = missing["guest_kernel"]["Err"].as_str().unwrap_or_default();
        assert!(
            err.contains("not built (first use") && err.contains("first microVM sandbox builds it"),
            "{missing}"
        );
    }

    let link = cached_build(&cache, &fragment());
    let found = doctor(&ctx);
    assert_eq!(
        found["guest_kernel"]["Ok"].as_str(),
        Some(link.to_str().unwrap()),
        "{found}"
    );
    let human = ctx.ok(&["doctor"]);
    assert!(
        human.contains(&format!("guest kernel:       {}", link.display())),
        "{human}"
    );

    // Built before the fragment asked for an option: rebuilt on the next microVM start, and doctor says why.
    cached_build(&cache, "CONFIG_64BIT=y\n");
    if !packaged {
        let stale = doctor(&ctx);
        let err = stale["guest_kernel"]["Err"].as_str().unwrap_or_default();
        assert!(
            err.contains("out of date") && err.contains("CONFIG_VIRTIO"),
            "{stale}"
        );
    }
}

#[test]
fn a_microvm_without_hardware_virtualization_fails_before_building_the_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("kernel-cache");
    let ctx = kernel_context(&cache);
    if doctor(&ctx)["hardware_virtualization"] == true {
        eprintln!(
            "SKIPPED a_microvm_without_hardware_virtualization_fails_before_building_the_kernel: this host has \
             hardware virtualization"
        );
        return;
    }
    let ws = tmp.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    for verb in ["run", "create"] {
        let (code, _, err) = ctx.sbx(&[
            verb,
            "--isolation",
            "microvm",
            "shell",
            ws.to_str().unwrap(),
        ]);
        assert_eq!(code, 1, "{verb}: {err}");
        assert!(
            err.contains("needs hardware virtualization") && err.contains("--isolation namespaces"),
            "{verb}: {err}"
        );
        assert!(
            !err.contains("building the microVM guest kernel"),
            "{verb} must not start a kernel build: {err}"
        );
    }
    assert!(!cache.exists(), "nothing was written to the kernel cache");
    assert_eq!(ctx.ok(&["ls", "--json"]).trim(), "[]");
}
