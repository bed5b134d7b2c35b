//! Host side of sbx-vmm's hybrid vsock: connect to the VM's Unix socket, ask for a guest port, get a byte stream.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// The longest answer line the VMM sends (`OK <port>\n`).
const MAX_ANSWER: usize = 64;

/// Opens a stream to guest `port` through the hybrid-vsock socket `uds`: sends `CONNECT <port>\n` and expects
/// `OK <host port>\n`. Bytes after the answer belong to the guest's stream, so the answer is read byte by byte.
pub fn connect_guest(uds: &Path, port: u32, timeout: Duration) -> io::Result<UnixStream> {
    let stream = UnixStream::connect(uds)?;
    stream.set_read_timeout(Some(timeout))?;
    (&stream).write_all(format!("CONNECT {port}\n").as_bytes())?;
    let mut answer = Vec::with_capacity(16);
    let mut byte = [0u8; 1];
    loop {
        match (&stream).read(&mut byte)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("nothing listens on guest vsock port {port} yet"),
                ));
            }
            _ if byte[0] == b'\n' => break,
            _ if answer.len() == MAX_ANSWER => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "over-long vsock answer",
                ));
            }
            _ => answer.push(byte[0]),
        }
    }
    if !answer.starts_with(b"OK ") {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "vsock CONNECT {port} answered {:?}",
                String::from_utf8_lossy(&answer)
            ),
        ));
    }
    stream.set_read_timeout(None)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use std::io::BufRead;
    use std::os::unix::net::UnixListener;

    use super::*;

    fn fake_vmm(
        answer: &'static [u8],
    ) -> (
        tempfile::TempDir,
        std::path::PathBuf,
        std::thread::JoinHandle<String>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vsock.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut line = String::new();
            std::io::BufReader::new(&s).read_line(&mut line).unwrap();
            s.write_all(answer).unwrap();
            line
        });
        (dir, path, t)
    }

    #[test]
    fn the_answer_is_consumed_and_guest_bytes_stay_in_the_stream() {
        let (_dir, path, t) = fake_vmm(b"OK 1073741824\nguest bytes");
        let mut s = connect_guest(&path, 1024, Duration::from_secs(5)).unwrap();
        assert_eq!(t.join().unwrap(), "CONNECT 1024\n");
        let mut rest = String::new();
        s.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "guest bytes");
    }

    #[test]
    fn a_refusal_or_garbage_is_an_error() {
        let (_dir, path, t) = fake_vmm(b"");
        assert_eq!(
            connect_guest(&path, 1024, Duration::from_secs(5))
                .unwrap_err()
                .kind(),
            io::ErrorKind::ConnectionRefused
        );
        t.join().unwrap();
        let (_dir, path, t) = fake_vmm(&[b'x'; 200]);
        assert_eq!(
            connect_guest(&path, 1024, Duration::from_secs(5))
                .unwrap_err()
                .kind(),
            io::ErrorKind::InvalidData
        );
        t.join().unwrap();
    }
}
