//! Fuzzes the secret store file reader: age decryption of arbitrary bytes with a real store's
//! key, and the decrypted-content parser directly.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sbx_secrets::{FileStore, Protection, SecretKey, SecretStore};

fn store() -> &'static FileStore {
    static STORE: OnceLock<FileStore> = OnceLock::new();
    STORE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("sbx-fuzz-secrets-{}", std::process::id()));
        let store = FileStore::open(&dir, Protection::KeyFile).expect("open fuzz store");
        let key = SecretKey::global("fuzz").expect("key");
        store.set(&key, &"value".into()).expect("create key file");
        store
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = sbx_secrets::store::format::parse(data);
    let _ = store().decode(data);
});
