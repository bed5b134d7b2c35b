//! Directories: OPENDIR, READDIR, READDIRPLUS.

use std::mem::MaybeUninit;

use rustix::fs::{OFlags, RawDir, SeekFrom};
use rustix::io::Errno;

use super::FileServer;
use crate::abi::{DIRENTPLUS_LEN, EntryOut, encode_open_out, fopen, push_dirent};
use crate::handle::{Handle, HandleKind};

/// Bytes of `getdents64` output fetched per host call.
const GETDENTS_BUF: usize = 32 * 1024;

impl FileServer {
    /// OPENDIR. The guest kernel may cache the listing (`FOPEN_CACHE_DIR`) and reuses it at the next opendir
    /// (`FOPEN_KEEP_CACHE`) only while the directory is unchanged: every entry created, removed or renamed in it — by
    /// the host or by the guest — changes its mtime and ctime, so the version check of file contents applies as is.
    /// Repeated scans of an unchanged tree (`git status`, build systems) then cost OPENDIR and RELEASEDIR only: no
    /// READDIRPLUS and no per-entry lookups.
    pub(super) fn opendir(&self, node: u64, out: &mut Vec<u8>) -> Result<(), Errno> {
        let inode = self.inode(node)?;
        if !inode.is_dir() {
            return Err(Errno::NOTDIR);
        }
        let (fd, st) = inode.reopen_with_stat(OFlags::RDONLY)?;
        let open_flags = if self.config.cache.keep_cache {
            fopen::CACHE_DIR | self.keep_cache_flag(&inode, &st)
        } else {
            0
        };
        let fh = self.handles.insert(Handle {
            inode,
            kind: HandleKind::Dir(std::sync::Mutex::new(fd)),
        })?;
        encode_open_out(out, fh, open_flags);
        Ok(())
    }

    /// READDIR / READDIRPLUS from the entry cookie `arg.offset`, as many entries as fit in `arg.size`.
    ///
    /// With `plus`, each entry carries a full lookup (one lookup reference each, as the kernel expects), except `.` and
    /// `..`, which are sent with node id 0 and take no reference. The space check happens before the lookup, so an
    /// entry that does not fit never leaks a reference.
    pub(super) fn readdir(
        &self,
        arg: &crate::request::ReadIn,
        plus: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        let handle = self.handles.get(arg.fh)?;
        let dir = handle.dir()?.lock().map_err(|_| Errno::IO)?;
        rustix::fs::seek(&*dir, SeekFrom::Start(arg.offset))?;
        let limit = out.len() + (arg.size as usize).min(self.max_request_len());
        let mut buf = vec![MaybeUninit::<u8>::uninit(); GETDENTS_BUF];
        let mut entries = RawDir::new(&*dir, &mut buf);
        while let Some(entry) = entries.next() {
            let entry = entry?;
            let name = entry.file_name();
            let bytes = name.to_bytes();
            let typ = entry.file_type().as_raw_mode() >> 12;
            let off = entry.next_entry_cookie();
            if !plus {
                if !push_dirent(out, limit, entry.ino(), off, typ, bytes) {
                    break;
                }
                continue;
            }
            if out.len() + DIRENTPLUS_LEN + crate::abi::dirent_size(bytes.len())
                - crate::abi::DIRENT_LEN
                > limit
            {
                break;
            }
            let dots = bytes == b"." || bytes == b"..";
            let (entry_out, ino) = if dots {
                (EntryOut::default(), entry.ino())
            } else {
                match self.lookup_inode(&handle.inode, name) {
                    Ok((inode, st)) => (self.entry_out(inode.nodeid, &st), st.st_ino),
                    // Vanished (or unreadable) since getdents: leave it out.
                    Err(_) => continue,
                }
            };
            let mark = out.len();
            entry_out.encode(out);
            if !push_dirent(out, limit, ino, off, typ, bytes) {
                out.truncate(mark); // cannot happen after the size check above; keep the reply well-formed anyway
                break;
            }
        }
        Ok(())
    }
}
