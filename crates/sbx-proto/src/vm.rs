//! What the host and the agent agree on for the microVM backend: vsock ports, the guest's context id, and the
//! encoding of workspace shares on the kernel command line.
//!
//! The host boots the guest with `-- --mode microvm --share TAG=PATH[:ro] ...` after the kernel parameters; the
//! kernel hands those words to the agent (PID 1) as its arguments. Command-line words cannot hold spaces, so the path
//! is percent-encoded with [`encode_share`] and decoded by the agent with [`decode_share`].

/// The guest's vsock context id (the host is 2).
pub const GUEST_CID: u32 = 3;
/// Guest port of the agent's exec service (host → guest: `CONNECT 1024`).
pub const VSOCK_AGENT_PORT: u32 = 1024;
/// Host port the agent's egress forwarder connects to (guest → host: the VMM's `<uds>_1025` listener, which is the
/// sandbox's proxy socket).
pub const VSOCK_EGRESS_PORT: u32 = 1025;

/// A workspace shared into the microVM with virtio-fs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The virtio-fs mount tag.
    pub tag: String,
    /// The absolute path, the same inside as on the host.
    pub path: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// Encodes a share as one command-line word: `TAG=PATH` or `TAG=PATH:ro`, with the path percent-encoded (every byte
/// outside `A-Za-z0-9/._-` becomes `%XX`, so spaces, `=`, `:` and `%` survive).
pub fn encode_share(share: &Share) -> String {
    let mut out = String::with_capacity(share.tag.len() + share.path.len() + 4);
    out.push_str(&share.tag);
    out.push('=');
    for b in share.path.bytes() {
        if b.is_ascii_alphanumeric() || b"/._-".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if share.read_only {
        out.push_str(":ro");
    }
    out
}

/// Decodes [`encode_share`]'s word; the error says what is wrong. The path must be absolute and free of `..`.
pub fn decode_share(word: &str) -> Result<Share, String> {
    let (tag, rest) = word
        .split_once('=')
        .ok_or_else(|| format!("share {word:?} is not TAG=PATH[:ro]"))?;
    if tag.is_empty()
        || tag.len() > 36
        || !tag
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "share tag {tag:?} must be 1-36 characters of A-Za-z0-9-_"
        ));
    }
    let (encoded, read_only) = match rest.strip_suffix(":ro") {
        Some(p) => (p, true),
        None => (rest, false),
    };
    let mut bytes = Vec::with_capacity(encoded.len());
    let mut it = encoded.bytes();
    while let Some(b) = it.next() {
        if b == b'%' {
            let hex = [it.next(), it.next()];
            let [Some(h), Some(l)] = hex else {
                return Err(format!("share path {encoded:?} ends inside a %XX escape"));
            };
            let digit = |c: u8| char::from(c).to_digit(16);
            let (Some(h), Some(l)) = (digit(h), digit(l)) else {
                return Err(format!("share path {encoded:?} has a bad %XX escape"));
            };
            bytes.push((h * 16 + l) as u8);
        } else {
            bytes.push(b);
        }
    }
    let path =
        String::from_utf8(bytes).map_err(|_| format!("share path {encoded:?} is not UTF-8"))?;
    if !path.starts_with('/') || path.split('/').any(|c| c == "..") || path.contains('\0') {
        return Err(format!(
            "share path {path:?} must be absolute, without `..` or NUL"
        ));
    }
    Ok(Share {
        tag: tag.to_owned(),
        path,
        read_only,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_round_trip_through_one_word() {
        for (path, ro) in [
            ("/home/me/project", false),
            ("/tmp/with space/=:%x", true),
            ("/é/ü", false),
        ] {
            let share = Share {
                tag: "ws0".into(),
                path: path.into(),
                read_only: ro,
            };
            let word = encode_share(&share);
            assert!(!word.contains(' '), "{word}");
            assert_eq!(decode_share(&word).unwrap(), share);
        }
    }

    #[test]
    fn hostile_share_words_are_refused() {
        for bad in [
            "noequals",
            "=/x",
            "t a=/x",
            "ws=relative",
            "ws=/a/../etc",
            "ws=/a%2",
            "ws=/a%zz",
            "ws=/a%00b",
            "ws=/%FF",
        ] {
            assert!(decode_share(bad).is_err(), "{bad}");
        }
    }
}
