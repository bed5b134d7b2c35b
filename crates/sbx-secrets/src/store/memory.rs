//! The in-memory store: for tests and throwaway sessions; nothing persists.

use std::sync::Mutex;

use super::format::Entries;
use super::{BackendKind, SecretStore};
use crate::error::StoreError;
use crate::value::{SecretKey, SecretValue};

/// Secrets held in process memory (zeroized when dropped).
#[derive(Debug, Default)]
pub struct MemoryStore {
    entries: Mutex<Entries>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Entries) -> T) -> T {
        // A panic while holding the lock cannot leave entries half-updated (each operation is
        // a single map call), so a poisoned lock is safe to reuse.
        let mut guard = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut guard)
    }
}

impl SecretStore for MemoryStore {
    fn get(&self, key: &SecretKey) -> Result<Option<SecretValue>, StoreError> {
        Ok(self.with(|e| e.get(key).cloned()))
    }

    fn set(&self, key: &SecretKey, value: &SecretValue) -> Result<(), StoreError> {
        self.with(|e| e.insert(key.clone(), value.clone()));
        Ok(())
    }

    fn delete(&self, key: &SecretKey) -> Result<bool, StoreError> {
        Ok(self.with(|e| e.remove(key).is_some()))
    }

    fn list(&self) -> Result<Vec<SecretKey>, StoreError> {
        Ok(self.with(|e| e.keys().cloned().collect()))
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Memory
    }
}
