//! Mapping between the guest's file owners and the host's.
//!
//! The agent in the guest usually runs as one user (often root). Files it creates must belong to the host user who
//! owns the workspace, and the host user's files must look like the agent's own inside the guest. [`IdMapping`] maps
//! exactly one uid and one gid each way; other owners pass through unchanged, except that a host owner equal to the
//! guest id (which would be ambiguous) shows as the overflow id 65534.

/// The overflow uid/gid ("nobody"), shown for host owners that would otherwise be mistaken for the mapped guest id.
pub const OVERFLOW_ID: u32 = 65534;

/// One uid and one gid mapped between guest and host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdMapping {
    /// The guest user that appears to own the host user's files.
    pub guest_uid: u32,
    /// The guest group that appears to own the host group's files.
    pub guest_gid: u32,
    /// The host user that owns what the guest creates.
    pub host_uid: u32,
    /// The host group that owns what the guest creates.
    pub host_gid: u32,
}

impl IdMapping {
    /// No translation: the guest sees host ids, and creations belong to the server's effective ids.
    pub fn identity() -> Self {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        Self {
            guest_uid: uid,
            guest_gid: gid,
            host_uid: uid,
            host_gid: gid,
        }
    }

    /// Host uid → the uid the guest sees.
    pub fn uid_to_guest(&self, host: u32) -> u32 {
        map_out(host, self.host_uid, self.guest_uid)
    }

    /// Host gid → the gid the guest sees.
    pub fn gid_to_guest(&self, host: u32) -> u32 {
        map_out(host, self.host_gid, self.guest_gid)
    }

    /// A uid the guest asked to chown to → the host uid, or `None` when the guest may not hand files to that user.
    pub fn uid_to_host(&self, guest: u32) -> Option<u32> {
        (guest == self.guest_uid).then_some(self.host_uid)
    }

    /// A gid the guest asked to chown to → the host gid, or `None` when not allowed.
    pub fn gid_to_host(&self, guest: u32) -> Option<u32> {
        (guest == self.guest_gid).then_some(self.host_gid)
    }
}

fn map_out(host: u32, mapped_host: u32, mapped_guest: u32) -> u32 {
    if host == mapped_host {
        mapped_guest
    } else if host == mapped_guest {
        OVERFLOW_ID
    } else {
        host
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_user_appears_as_guest_user_and_back() {
        let m = IdMapping {
            guest_uid: 0,
            guest_gid: 0,
            host_uid: 1000,
            host_gid: 100,
        };
        assert_eq!(m.uid_to_guest(1000), 0);
        assert_eq!(m.gid_to_guest(100), 0);
        // Host root must not look like the guest's root.
        assert_eq!(m.uid_to_guest(0), OVERFLOW_ID);
        assert_eq!(m.uid_to_guest(33), 33);
        assert_eq!(m.uid_to_host(0), Some(1000));
        assert_eq!(m.uid_to_host(1000), None);
        assert_eq!(m.gid_to_host(0), Some(100));
        assert_eq!(m.gid_to_host(5), None);
    }
}
