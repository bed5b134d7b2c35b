//! Running the external programs a build needs, with their output streamed to the progress callback.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::Progress;
use crate::error::TemplateError;

/// How many lines of a failed step's output the error keeps.
const ERROR_TAIL: usize = 12;

/// Finds `program` on `PATH` or in the sbin directories (root's tools live there even when `PATH` lacks them).
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Runs `cmd`, forwarding each output line to `progress`; fails with the last lines of output.
pub(crate) fn run_step(
    progress: &mut dyn Progress,
    step: &str,
    cmd: &mut Command,
) -> Result<(), TemplateError> {
    progress.line(&format!("$ {cmd:?}"));
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| TemplateError::Step {
            step: step.into(),
            detail: format!("cannot start {:?}: {e}", cmd.get_program()),
        })?;
    let (tx, rx) = mpsc::channel::<String>();
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        })
    })
    .collect();
    drop(tx);
    let mut tail = VecDeque::with_capacity(ERROR_TAIL);
    for line in rx {
        progress.line(&line);
        if tail.len() == ERROR_TAIL {
            tail.pop_front();
        }
        tail.push_back(line);
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait().map_err(|e| TemplateError::Step {
        step: step.into(),
        detail: e.to_string(),
    })?;
    if status.success() {
        return Ok(());
    }
    Err(TemplateError::Step {
        step: step.into(),
        detail: format!("{status}; last output:\n{}", Vec::from(tail).join("\n")),
    })
}

/// Checks that `host:port` accepts a TCP connection within a few seconds.
pub(crate) fn reachable(service: &'static str, host: &str, port: u16) -> Result<(), TemplateError> {
    let endpoint = format!("{host}:{port}");
    let unreachable = |detail: String| TemplateError::Unreachable {
        service,
        endpoint: endpoint.clone(),
        detail,
    };
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| unreachable(format!("name resolution failed: {e}")))?
        .collect();
    let mut last = String::from("no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(_) => return Ok(()),
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    Err(unreachable(last))
}

/// Host and port of an `http://` or `https://` URL (the default port of the scheme when absent).
pub(crate) fn url_endpoint(url: &str) -> Option<(String, u16)> {
    let (scheme, rest) = url.split_once("://")?;
    let default = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = rest.split('/').next()?;
    let authority = authority.rsplit('@').next()?;
    match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || authority.starts_with('[') => {
            let port = port.parse().ok()?;
            Some((host.trim_matches(['[', ']']).to_owned(), port))
        }
        _ => Some((authority.trim_matches(['[', ']']).to_owned(), default)),
    }
    .filter(|(host, _)| !host.is_empty())
}

/// Bytes allocated on disk below `path` (sparse files count what they use), without following symlinks.
pub fn disk_usage(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return own;
    };
    own + entries
        .flatten()
        .map(|e| disk_usage(&e.path()))
        .sum::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_endpoints_take_the_scheme_default_port() {
        assert_eq!(
            url_endpoint("http://deb.debian.org/debian"),
            Some(("deb.debian.org".into(), 80))
        );
        assert_eq!(
            url_endpoint("https://mirror.example:8443/debian/"),
            Some(("mirror.example".into(), 8443))
        );
        assert_eq!(url_endpoint("ftp://x/"), None);
        assert_eq!(url_endpoint("http:///"), None);
    }

    #[test]
    fn a_failed_step_reports_its_last_output_lines() {
        struct Lines(Vec<String>);
        impl Progress for Lines {
            fn step(&mut self, _: usize, _: usize, _: &str) {}
            fn line(&mut self, line: &str) {
                self.0.push(line.to_owned());
            }
        }
        let mut seen = Lines(Vec::new());
        let err = run_step(
            &mut seen,
            "demo",
            Command::new("sh").args(["-c", "echo one; echo two >&2; exit 3"]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("demo") && err.contains("exit status: 3"),
            "{err}"
        );
        assert!(err.contains("one") && err.contains("two"), "{err}");
        assert!(seen.0.iter().any(|l| l == "two"));
    }

    #[test]
    fn an_unreachable_port_names_the_service_and_endpoint() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let err = reachable("npm registry", "127.0.0.1", port)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("npm registry") && err.contains(&format!("127.0.0.1:{port}")),
            "{err}"
        );
    }
}
