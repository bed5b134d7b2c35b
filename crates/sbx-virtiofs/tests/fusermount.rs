//! Mounting through the setuid helper (the unprivileged path): fusermount3/fusermount mounts and passes the
//! `/dev/fuse` descriptor back over a socket.

use std::sync::Arc;

use sbx_virtiofs::{FileServer, HostMount, MountError, MountMethod, MountOptions, ShareConfig};

#[test]
fn mount_via_fusermount_serves_and_unmounts() {
    let tmp = tempfile::tempdir().unwrap();
    let (share, mnt) = (tmp.path().join("share"), tmp.path().join("mnt"));
    std::fs::create_dir(&share).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    std::fs::write(share.join("hello"), b"from the host").unwrap();
    let server = Arc::new(FileServer::new(ShareConfig::new(&share)).unwrap());
    let options = MountOptions {
        method: MountMethod::Fusermount,
        ..MountOptions::default()
    };
    let mount = match HostMount::mount(server, &mnt, &options) {
        Ok(m) => m,
        Err(e @ (MountError::NotPermitted { .. } | MountError::OpenDevice { .. })) => {
            eprintln!("SKIPPED mount_via_fusermount: {e}");
            return;
        }
        Err(e) => panic!("fusermount mount failed: {e}"),
    };
    assert_eq!(std::fs::read(mnt.join("hello")).unwrap(), b"from the host");
    std::fs::write(mnt.join("back"), b"from the guest side").unwrap();
    assert_eq!(
        std::fs::read(share.join("back")).unwrap(),
        b"from the guest side"
    );
    mount.unmount().unwrap();
    assert!(
        !mnt.join("hello").exists(),
        "unmounted: the mount point is empty again"
    );
}
