//! The manifest written next to each built template: what it is, when it was built, how big it is.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Variant;
use crate::error::{TemplateError, io};

/// Version of the manifest format.
pub const MANIFEST_FORMAT: u32 = 1;

/// What a built template holds. Stored as `manifest.json` in the template's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`] when written.
    pub format: u32,
    /// The template's name.
    pub name: String,
    /// Which recipe built it.
    pub variant: Variant,
    /// What the recipe did (suite, recipe revision); a template whose recipe differs from the current one is rebuilt.
    pub recipe: String,
    /// When the build finished (RFC 3339, UTC).
    pub built_at: String,
    /// How long the build took, in seconds.
    pub build_seconds: u64,
    /// Bytes used by the root directory.
    pub rootfs_bytes: u64,
    /// Bytes allocated by the ext4 image (0 when none was made).
    pub image_bytes: u64,
    /// Apparent size of the ext4 image (what the guest sees as the disk size; 0 when none was made).
    pub image_size: u64,
    /// Debian packages installed (empty for the host template).
    pub packages: Vec<String>,
    /// npm packages installed globally.
    pub agent_clis: Vec<String>,
    /// The sbx version that built it.
    pub sbx_version: String,
}

impl Manifest {
    /// Reads and checks a manifest file.
    pub fn load(path: &Path) -> Result<Manifest, TemplateError> {
        let text = std::fs::read_to_string(path).map_err(|e| TemplateError::Manifest {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let manifest: Manifest =
            serde_json::from_str(&text).map_err(|e| TemplateError::Manifest {
                path: path.to_path_buf(),
                detail: e.to_string(),
            })?;
        if manifest.format != MANIFEST_FORMAT {
            return Err(TemplateError::Manifest {
                path: path.to_path_buf(),
                detail: format!(
                    "format {} (this sbx reads format {MANIFEST_FORMAT})",
                    manifest.format
                ),
            });
        }
        Ok(manifest)
    }

    /// Writes the manifest atomically (temp file, fsync, rename).
    pub fn store(&self, path: &Path) -> Result<(), TemplateError> {
        let tmp = path.with_extension(format!("json.tmp.{}", std::process::id()));
        let text = serde_json::to_string_pretty(self).map_err(|e| TemplateError::Manifest {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.write_all(b"\n"))
            .and_then(|()| file.sync_all())
            .map_err(io("write", &tmp))?;
        std::fs::rename(&tmp, path).map_err(io("rename into place", path))
    }
}

/// The current time as RFC 3339 (UTC).
pub(crate) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "unknown".into())
}
