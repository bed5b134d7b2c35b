//! Round trips through every backend available here, failure modes that must leave the store
//! untouched, concurrent writers from several processes, and a scan of everything the store
//! wrote for the secret value.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use sbx_secrets::store::file::{KEY_FILE, STORE_FILE};
use sbx_secrets::{
    BackendKind, FileStore, MemoryStore, OpenOptions, Preference, Protection, SecretKey,
    SecretStore, StoreError,
};
use secrecy::SecretString;

const SECRET: &str = "sk-ant-api03-UNIQUE-canary-7f3a9c1e5b";

fn pass(p: &str) -> Protection {
    Protection::passphrase(SecretString::from(p.to_owned())).with_work_factor(10)
}

fn round_trip(store: &dyn SecretStore) {
    let global = SecretKey::global("anthropic").unwrap();
    let scoped = SecretKey::sandbox("dev", "anthropic").unwrap();
    let other = SecretKey::global("github").unwrap();
    assert_eq!(store.get(&global).unwrap(), None);
    store.set(&global, &SECRET.into()).unwrap();
    store.set(&scoped, &"sk-sandbox".into()).unwrap();
    store.set(&other, &"ghp_x".into()).unwrap();
    assert_eq!(store.get(&global).unwrap().unwrap().expose(), SECRET);
    assert_eq!(
        store.list().unwrap(),
        vec![global.clone(), other.clone(), scoped.clone()]
    );
    // Sandbox scope overrides global for the same service; other sandboxes see the global one.
    let dev = store.effective_for("dev").unwrap();
    assert_eq!(dev["anthropic"].expose(), "sk-sandbox");
    assert_eq!(dev["github"].expose(), "ghp_x");
    assert_eq!(
        store.effective_for("prod").unwrap()["anthropic"].expose(),
        SECRET
    );
    store.set(&other, &"ghp_y".into()).unwrap();
    assert_eq!(store.get(&other).unwrap().unwrap().expose(), "ghp_y");
    assert!(store.delete(&other).unwrap());
    assert!(!store.delete(&other).unwrap());
    assert_eq!(store.get(&other).unwrap(), None);
}

#[test]
fn memory_round_trip() {
    let store = MemoryStore::new();
    round_trip(&store);
    assert_eq!(store.kind(), BackendKind::Memory);
}

#[test]
fn key_file_round_trip_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), Protection::KeyFile).unwrap();
    round_trip(&store);
    let reopened = FileStore::open(dir.path(), Protection::KeyFile).unwrap();
    assert_eq!(
        reopened
            .get(&SecretKey::global("anthropic").unwrap())
            .unwrap()
            .unwrap()
            .expose(),
        SECRET
    );
    for name in [STORE_FILE, KEY_FILE] {
        let mode = fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
}

#[test]
fn passphrase_round_trip_and_wrong_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), pass("correct horse")).unwrap();
    round_trip(&store);
    assert_eq!(store.kind(), BackendKind::PassphraseFile);
    assert!(
        !dir.path().join(KEY_FILE).exists(),
        "passphrase mode writes no key file"
    );
    let before = fs::read(dir.path().join(STORE_FILE)).unwrap();

    let wrong = FileStore::open(dir.path(), pass("battery staple")).unwrap();
    let err = wrong
        .get(&SecretKey::global("anthropic").unwrap())
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongPassphrase { .. }), "{err}");
    assert!(err.to_string().contains(STORE_FILE));
    let err = wrong
        .set(&SecretKey::global("x").unwrap(), &"y".into())
        .unwrap_err();
    assert!(matches!(err, StoreError::WrongPassphrase { .. }), "{err}");
    assert_eq!(
        fs::read(dir.path().join(STORE_FILE)).unwrap(),
        before,
        "wrong passphrase must not overwrite"
    );

    // Key-file mode on a passphrase store asks for the passphrase instead of failing oddly.
    let err = FileStore::open(dir.path(), Protection::KeyFile).unwrap_err();
    assert!(
        matches!(err, StoreError::PassphraseRequired { .. }),
        "{err}"
    );
}

#[test]
fn corrupt_and_truncated_files_fail_clearly_and_are_not_overwritten() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), Protection::KeyFile).unwrap();
    store
        .set(&SecretKey::global("anthropic").unwrap(), &SECRET.into())
        .unwrap();
    let path = dir.path().join(STORE_FILE);
    let good = fs::read(&path).unwrap();
    let damaged: Vec<(&str, Vec<u8>)> = vec![
        ("truncated", good[..good.len() - 20].to_vec()),
        ("header only", good[..60.min(good.len())].to_vec()),
        ("flipped payload byte", {
            let mut g = good.clone();
            let last = g.len() - 5;
            g[last] ^= 0x55;
            g
        }),
        ("garbage", b"this is not an age file at all".to_vec()),
        ("empty", Vec::new()),
    ];
    for (what, bytes) in damaged {
        fs::write(&path, &bytes).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        let err = store
            .get(&SecretKey::global("anthropic").unwrap())
            .unwrap_err();
        assert!(matches!(err, StoreError::Decrypt { .. }), "{what}: {err}");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{what}: {err}"
        );
        let err = store
            .set(&SecretKey::global("github").unwrap(), &"x".into())
            .unwrap_err();
        assert!(matches!(err, StoreError::Decrypt { .. }), "{what}: {err}");
        assert_eq!(
            fs::read(&path).unwrap(),
            bytes,
            "{what}: file was overwritten"
        );
    }
}

#[test]
fn well_encrypted_but_malformed_content_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), Protection::KeyFile).unwrap();
    store
        .set(&SecretKey::global("anthropic").unwrap(), &SECRET.into())
        .unwrap();
    let identity_text = fs::read_to_string(dir.path().join(KEY_FILE)).unwrap();
    let line = identity_text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap();
    let identity: age::x25519::Identity = line.parse().unwrap();
    let bad = age::encrypt(
        &identity.to_public(),
        b"sbx-secrets 1\nglobal\tanthropic\tnot-hex\n",
    )
    .unwrap();
    fs::write(dir.path().join(STORE_FILE), &bad).unwrap();
    let err = store.list().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { line: 2, .. }), "{err}");
    assert!(
        store
            .set(&SecretKey::global("x").unwrap(), &"y".into())
            .is_err()
    );
    assert_eq!(fs::read(dir.path().join(STORE_FILE)).unwrap(), bad);
}

#[test]
fn group_or_world_readable_files_are_refused_with_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), Protection::KeyFile).unwrap();
    store
        .set(&SecretKey::global("anthropic").unwrap(), &SECRET.into())
        .unwrap();
    for name in [STORE_FILE, KEY_FILE] {
        let path = dir.path().join(name);
        let before = fs::read(dir.path().join(STORE_FILE)).unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = store
                .get(&SecretKey::global("anthropic").unwrap())
                .unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, StoreError::InsecurePermissions { .. }),
                "{msg}"
            );
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
            assert!(
                store
                    .set(&SecretKey::global("x").unwrap(), &"y".into())
                    .is_err()
            );
            assert_eq!(fs::read(dir.path().join(STORE_FILE)).unwrap(), before);
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    }
    assert!(
        store
            .get(&SecretKey::global("anthropic").unwrap())
            .unwrap()
            .is_some()
    );
}

#[test]
fn missing_or_replaced_key_file_never_loses_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), Protection::KeyFile).unwrap();
    store
        .set(&SecretKey::global("anthropic").unwrap(), &SECRET.into())
        .unwrap();
    let before = fs::read(dir.path().join(STORE_FILE)).unwrap();
    let key = dir.path().join(KEY_FILE);
    fs::rename(&key, dir.path().join("moved.key")).unwrap();
    let err = store
        .set(&SecretKey::global("x").unwrap(), &"y".into())
        .unwrap_err();
    assert!(matches!(err, StoreError::MissingKeyFile { .. }), "{err}");
    assert!(
        !key.exists(),
        "must not generate a fresh key over an existing store"
    );
    assert_eq!(fs::read(dir.path().join(STORE_FILE)).unwrap(), before);

    // Another store's key: clear "not encrypted to this key" error.
    let other = tempfile::tempdir().unwrap();
    FileStore::open(other.path(), Protection::KeyFile)
        .unwrap()
        .set(&SecretKey::global("a").unwrap(), &"b".into())
        .unwrap();
    fs::copy(other.path().join(KEY_FILE), &key).unwrap();
    let err = store
        .get(&SecretKey::global("anthropic").unwrap())
        .unwrap_err();
    assert!(
        err.to_string().contains("not encrypted to the key"),
        "{err}"
    );
    assert_eq!(fs::read(dir.path().join(STORE_FILE)).unwrap(), before);
}

#[test]
fn open_reports_backend_and_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (store, report) = sbx_secrets::open(
        dir.path(),
        &OpenOptions {
            preference: Preference::File,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.kind, BackendKind::EncryptedFile);
    store
        .set(&SecretKey::global("anthropic").unwrap(), &SECRET.into())
        .unwrap();

    // With a store on disk, Auto keeps it (secrets never silently move to another backend).
    let (_, report) = sbx_secrets::open_default(dir.path()).unwrap();
    assert_eq!(report.kind, BackendKind::EncryptedFile);
    assert!(report.reason.contains("already exists"), "{report}");

    let empty = tempfile::tempdir().unwrap();
    let (_, report) = sbx_secrets::open_default(empty.path()).unwrap();
    println!("backend on this machine: {report}");
    match report.kind {
        BackendKind::Keychain => assert!(report.reason.contains("answered")),
        BackendKind::EncryptedFile => {
            assert_eq!(report.passed_over.len(), 1, "{report}");
            assert_eq!(report.passed_over[0].0, BackendKind::Keychain);
            assert!(!report.passed_over[0].1.is_empty());
        }
        other => panic!("unexpected backend {other}"),
    }

    let (_, report) = sbx_secrets::open(
        empty.path(),
        &OpenOptions {
            preference: Preference::Memory,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(report.kind, BackendKind::Memory);
}

#[cfg(feature = "keychain")]
#[test]
fn keychain_round_trip_when_a_session_bus_answers() {
    let dir = tempfile::tempdir().unwrap();
    match sbx_secrets::store::keychain::KeychainStore::open_platform(dir.path()) {
        Ok((store, description)) => {
            println!("keychain test running against {description}");
            let key = SecretKey::sandbox(&format!("sbx-test-{}", std::process::id()), "anthropic")
                .unwrap();
            store.set(&key, &SECRET.into()).unwrap();
            assert_eq!(store.get(&key).unwrap().unwrap().expose(), SECRET);
            assert!(store.list().unwrap().contains(&key));
            assert!(store.delete(&key).unwrap());
            assert_eq!(store.get(&key).unwrap(), None);
        }
        Err(why) => println!("SKIPPED keychain round trip: no usable OS keychain here: {why}"),
    }
}

/// Child side of the multi-process test: adds its keys one by one, each a separate locked
/// read-modify-write.
#[test]
fn concurrent_writer_child() {
    let (Ok(dir), Ok(id)) = (
        std::env::var("SBX_SECRETS_TEST_DIR"),
        std::env::var("SBX_SECRETS_TEST_WRITER"),
    ) else {
        return; // Only does something when spawned by the parent test below.
    };
    let store = FileStore::open(Path::new(&dir), Protection::KeyFile).unwrap();
    for i in 0..10 {
        let key = SecretKey::global(&format!("w{id}-k{i}")).unwrap();
        store.set(&key, &format!("value-{id}-{i}").into()).unwrap();
    }
}

#[test]
fn eight_processes_writing_at_once_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..8)
        .map(|id| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "concurrent_writer_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("SBX_SECRETS_TEST_DIR", dir.path())
                .env("SBX_SECRETS_TEST_WRITER", id.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    let store = FileStore::open(dir.path(), Protection::KeyFile).unwrap();
    let keys = store.list().unwrap();
    assert_eq!(keys.len(), 80, "every key of every writer must survive");
    for id in 0..8 {
        for i in 0..10 {
            let v = store
                .get(&SecretKey::global(&format!("w{id}-k{i}")).unwrap())
                .unwrap()
                .unwrap();
            assert_eq!(v.expose(), format!("value-{id}-{i}"));
        }
    }
    let leftovers: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "temp files left behind: {leftovers:?}"
    );
}

fn scan_for(dir: &Path, needle: &[u8], hits: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            scan_for(&path, needle, hits);
        } else {
            let bytes = fs::read(&path).unwrap();
            let hex: String = needle.iter().map(|b| format!("{b:02x}")).collect();
            if bytes.windows(needle.len()).any(|w| w == needle)
                || bytes.windows(hex.len()).any(|w| w == hex.as_bytes())
            {
                hits.push(path.display().to_string());
            }
        }
    }
}

#[test]
fn no_file_the_store_wrote_contains_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    for protection in [Protection::KeyFile, pass("pw")] {
        let sub = dir.path().join(
            format!("{:?}", std::mem::discriminant(&protection)).replace(['(', ')', ' '], ""),
        );
        let store = FileStore::open(&sub, protection).unwrap();
        store
            .set(&SecretKey::global("anthropic").unwrap(), &SECRET.into())
            .unwrap();
        store
            .set(
                &SecretKey::sandbox("dev", "openai").unwrap(),
                &SECRET.into(),
            )
            .unwrap();
        store
            .delete(&SecretKey::sandbox("dev", "openai").unwrap())
            .unwrap();
        // Errors and Debug output of the store never carry it either.
        let dbg = format!(
            "{store:?} {:?}",
            store.get(&SecretKey::global("anthropic").unwrap()).unwrap()
        );
        assert!(!dbg.contains(SECRET), "{dbg}");
    }
    let mut hits = Vec::new();
    scan_for(dir.path(), SECRET.as_bytes(), &mut hits);
    assert!(hits.is_empty(), "secret found in {hits:?}");
    // The scan itself works: a planted copy is found.
    fs::write(dir.path().join("planted"), format!("x{SECRET}x")).unwrap();
    scan_for(dir.path(), SECRET.as_bytes(), &mut hits);
    assert_eq!(hits.len(), 1);
}

#[test]
fn truncated_passphrase_store_is_reported_as_damage_not_a_wrong_passphrase() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path(), pass("pw")).unwrap();
    store
        .set(&SecretKey::global("anthropic").unwrap(), &SECRET.into())
        .unwrap();
    let path = dir.path().join(STORE_FILE);
    let good = fs::read(&path).unwrap();
    let truncated = &good[..good.len() - 10];
    fs::write(&path, truncated).unwrap();
    let err = store.list().unwrap_err();
    assert!(matches!(err, StoreError::Decrypt { .. }), "{err}");
    assert!(
        store
            .set(&SecretKey::global("x").unwrap(), &"y".into())
            .is_err()
    );
    assert_eq!(fs::read(&path).unwrap(), truncated);
}
