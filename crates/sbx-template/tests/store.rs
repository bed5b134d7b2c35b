//! The template store with the local host variant: build, cache, list, remove, concurrent builds, bad input.

use std::path::Path;

use sbx_template::{
    BuildOptions, NoProgress, Progress, TemplateError, TemplateStore, Variant, which,
};

fn no_image() -> BuildOptions {
    let mut o = BuildOptions::default();
    o.no_image = true;
    o
}

struct Steps(Vec<String>);

impl Progress for Steps {
    fn step(&mut self, index: usize, total: usize, what: &str) {
        self.0.push(format!("{index}/{total} {what}"));
    }
}

#[test]
fn a_second_build_is_served_from_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let store = TemplateStore::new(dir.path());
    let mut steps = Steps(Vec::new());
    let first = store
        .build("host", Variant::Host, &no_image(), &mut steps)
        .unwrap();
    assert!(!first.cached);
    assert_eq!(steps.0, ["1/1 copy this host's programs"]);
    assert!(first.template.rootfs().join("etc/passwd").is_file());
    let m = &first.template.manifest;
    assert_eq!((m.name.as_str(), m.variant), ("host", Variant::Host));
    assert!(m.rootfs_bytes > 0 && m.built_at.contains('T'));
    // Mark the built tree: a rebuild would replace it, the cache keeps it.
    std::fs::write(first.template.rootfs().join("marker"), "kept").unwrap();
    let mut again = Steps(Vec::new());
    let second = store
        .build("host", Variant::Host, &no_image(), &mut again)
        .unwrap();
    assert!(second.cached);
    assert!(again.0.is_empty(), "{:?}", again.0);
    assert_eq!(second.template, first.template);
    assert!(second.template.rootfs().join("marker").exists());
    // force rebuilds.
    let mut force = no_image();
    force.force = true;
    let third = store
        .build("host", Variant::Host, &force, &mut NoProgress)
        .unwrap();
    assert!(!third.cached);
    assert!(!third.template.rootfs().join("marker").exists());
}

#[test]
fn ls_lists_built_templates_and_rm_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = TemplateStore::new(dir.path().join("templates"));
    assert!(
        store.list().unwrap().is_empty(),
        "a store that does not exist yet is empty"
    );
    store
        .build("b-tpl", Variant::Host, &no_image(), &mut NoProgress)
        .unwrap();
    store
        .build("a-tpl", Variant::Host, &no_image(), &mut NoProgress)
        .unwrap();
    // A build in progress (hidden) and a directory without a manifest are not templates.
    std::fs::create_dir_all(store.root().join(".c.partial.1/rootfs")).unwrap();
    std::fs::create_dir_all(store.root().join("stray")).unwrap();
    let names: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|t| t.manifest.name)
        .collect();
    assert_eq!(names, ["a-tpl", "b-tpl"]);
    store.remove("a-tpl").unwrap();
    assert!(!store.dir("a-tpl").exists());
    let names: Vec<_> = store
        .list()
        .unwrap()
        .into_iter()
        .map(|t| t.manifest.name)
        .collect();
    assert_eq!(names, ["b-tpl"]);
    let err = store.remove("a-tpl").unwrap_err();
    assert!(matches!(err, TemplateError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("sbx template ls"), "{err}");
}

#[test]
fn names_that_escape_the_store_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = TemplateStore::new(dir.path());
    for bad in ["", "../etc", "a/b", ".hidden", "UPPER", &"x".repeat(65)] {
        let err = store
            .build(bad, Variant::Host, &no_image(), &mut NoProgress)
            .unwrap_err();
        assert!(
            matches!(err, TemplateError::InvalidName { .. }),
            "{bad}: {err}"
        );
        assert!(
            matches!(store.remove(bad), Err(TemplateError::InvalidName { .. })),
            "{bad}"
        );
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_corrupt_manifest_is_reported_with_its_path_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let store = TemplateStore::new(dir.path());
    let built = store
        .build("host", Variant::Host, &no_image(), &mut NoProgress)
        .unwrap();
    let manifest = built.template.dir.join("manifest.json");
    std::fs::write(&manifest, "{ not json").unwrap();
    let err = store.get("host").unwrap_err().to_string();
    assert!(
        err.contains(&manifest.display().to_string()) && err.contains("sbx template rm"),
        "{err}"
    );
}

#[test]
fn concurrent_builds_of_one_name_build_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_path_buf();
    let results: Vec<_> = (0..3)
        .map(|_| {
            let root = root.clone();
            std::thread::spawn(move || {
                TemplateStore::new(root)
                    .build("host", Variant::Host, &no_image(), &mut NoProgress)
                    .unwrap()
                    .cached
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|cached| !**cached).count(),
        1,
        "{results:?}"
    );
    assert_eq!(hidden_entries(&root), 0);
}

fn hidden_entries(root: &Path) -> usize {
    std::fs::read_dir(root)
        .unwrap()
        .flatten()
        .filter(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.starts_with('.') && !n.ends_with(".lock")
        })
        .count()
}

#[test]
fn a_local_build_with_an_image_records_its_sizes() {
    if which("mkfs.ext4").is_none() {
        println!("skipped: mkfs.ext4 is missing (apt-get install e2fsprogs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = TemplateStore::new(dir.path());
    let mut steps = Steps(Vec::new());
    let built = store
        .build("host", Variant::Host, &BuildOptions::default(), &mut steps)
        .unwrap();
    assert_eq!(steps.0.len(), 2, "{:?}", steps.0);
    let image = built.template.image().expect("image built");
    let m = &built.template.manifest;
    assert_eq!(m.image_size, std::fs::metadata(&image).unwrap().len());
    assert!(m.image_bytes > 0 && m.image_bytes < m.image_size);
    // A cached template without an image is rebuilt when an image is asked for.
    let cached = store
        .build(
            "host",
            Variant::Host,
            &BuildOptions::default(),
            &mut NoProgress,
        )
        .unwrap();
    assert!(cached.cached);
    assert_eq!(hidden_entries(dir.path()), 0);
}
