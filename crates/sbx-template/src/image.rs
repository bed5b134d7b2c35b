//! The ext4 image of a template root, for the microVM's read-only virtio-blk root.

use std::path::Path;
use std::process::Command;

use crate::Progress;
use crate::error::TemplateError;
use crate::tools::{disk_usage, run_step, which};

/// Free space left in an image on top of its content (the root is mounted read-only, so this only absorbs ext4's
/// own metadata and rounding).
const HEADROOM: u64 = 256 << 20;

/// The size of an image holding `content` bytes: content plus a quarter plus [`HEADROOM`], rounded up to 1 MiB.
pub fn image_size(content: u64) -> u64 {
    let raw = content + content / 4 + HEADROOM;
    raw.div_ceil(1 << 20) << 20
}

/// Makes `image` (a sparse ext4 file system labelled `sbx-root`) from the directory `root` with `mkfs.ext4 -d`.
pub fn make_ext4(
    root: &Path,
    image: &Path,
    progress: &mut dyn Progress,
) -> Result<(), TemplateError> {
    if which("mkfs.ext4").is_none() {
        return Err(TemplateError::MissingTool {
            tool: "mkfs.ext4",
            what: "template image",
            install: "apt-get install debootstrap e2fsprogs",
        });
    }
    let size_kib = image_size(disk_usage(root)) / 1024;
    let _ = std::fs::remove_file(image);
    run_step(
        progress,
        "mkfs.ext4",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "sbx-root", "-E", "root_owner=0:0", "-d"])
            .arg(root)
            .arg(image)
            .arg(format!("{size_kib}k")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;

    #[test]
    fn image_size_leaves_headroom_and_is_mib_aligned() {
        assert_eq!(image_size(0), HEADROOM);
        let s = image_size(1_000_000_000);
        assert!(s >= 1_250_000_000 + HEADROOM);
        assert_eq!(s % (1 << 20), 0);
    }

    #[test]
    fn an_image_is_made_from_a_directory() {
        if which("mkfs.ext4").is_none() || which("debugfs").is_none() {
            println!("skipped: mkfs.ext4/debugfs missing (apt-get install e2fsprogs)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hello"), "from the template\n").unwrap();
        let image = dir.path().join("root.ext4");
        make_ext4(&root, &image, &mut NoProgress).unwrap();
        let out = Command::new("debugfs")
            .args(["-R", "cat /etc/hello"])
            .arg(&image)
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "from the template\n");
        // Sparse: far fewer blocks allocated than the apparent size.
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(&image).unwrap();
        assert!(
            meta.blocks() * 512 < meta.len() / 2,
            "{} of {}",
            meta.blocks() * 512,
            meta.len()
        );
    }
}
