//! The agent binary as a plain process (`--mode process`): exec service and forwarder over real sockets.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use sbx_proto::{Client, ClientError, ExecRequest, ExitStatus, Message, WindowSize};

struct Agent {
    child: Child,
    dir: tempfile::TempDir,
    proxy_port: u16,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let proxy_port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_sbx-guest"))
            .args(["--mode", "process", "--listen"])
            .arg(format!("unix:{}", dir.path().join("agent.sock").display()))
            .arg("--proxy")
            .arg(format!("unix:{}", dir.path().join("proxy.sock").display()))
            .args(["--proxy-listen", &format!("127.0.0.1:{proxy_port}")])
            .spawn()
            .unwrap();
        let agent = Agent {
            child,
            dir,
            proxy_port,
        };
        // The socket file appears at bind(), a moment before listen(): wait until a connection is accepted.
        let deadline = Instant::now() + Duration::from_secs(10);
        while UnixStream::connect(agent.sock()).is_err() {
            assert!(Instant::now() < deadline, "agent did not start listening");
            std::thread::sleep(Duration::from_millis(5));
        }
        agent
    }

    fn sock(&self) -> PathBuf {
        self.dir.path().join("agent.sock")
    }

    fn connect(&self) -> Client {
        connect(&self.sock())
    }
}

fn connect(path: &Path) -> Client {
    let s = UnixStream::connect(path).unwrap();
    Client::connect_unix(s, "agent-test").unwrap()
}

fn req(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

#[test]
fn handshake_reports_readiness() {
    let agent = Agent::start();
    let client = agent.connect();
    assert_eq!(client.ready().mode, "process");
    assert_eq!(
        client.ready().proxy_listen,
        format!("127.0.0.1:{}", agent.proxy_port)
    );
    assert!(client.agent().starts_with("sbx-guest "));
}

#[test]
fn pipes_carry_stdout_stderr_and_exit_code() {
    let agent = Agent::start();
    let out = agent
        .connect()
        .run(&["sh", "-c", "echo out; echo err >&2; exit 3"])
        .unwrap();
    assert_eq!(out.stdout_text(), "out\n");
    assert_eq!(out.stderr_text(), "err\n");
    assert_eq!(out.status, ExitStatus::Code(3));
}

#[test]
fn stdin_reaches_the_command() {
    let agent = Agent::start();
    let client = agent.connect();
    let s = client.exec(req(&["cat"])).unwrap();
    let big = vec![b'x'; 200_000];
    s.write_stdin(&big).unwrap();
    s.close_stdin().unwrap();
    let out = s.wait_output().unwrap();
    assert_eq!(out.stdout.len(), big.len());
    assert!(out.success());
}

#[test]
fn env_cwd_and_proxy_variables_are_applied() {
    let agent = Agent::start();
    let client = agent.connect();
    let mut r = req(&["sh", "-c", "echo $SBX_PH $HTTPS_PROXY $no_proxy; pwd"]);
    r.env = vec![("SBX_PH".into(), "sbx-ph-github-abc".into())];
    r.cwd = Some("/tmp".into());
    let s = client.exec(r).unwrap();
    s.close_stdin().unwrap();
    let out = s.wait_output().unwrap();
    let expected = format!(
        "sbx-ph-github-abc http://127.0.0.1:{} localhost,127.0.0.1,::1\n/tmp\n",
        agent.proxy_port
    );
    assert_eq!(out.stdout_text(), expected);
}

#[test]
fn pty_sessions_have_a_terminal_that_resizes() {
    let agent = Agent::start();
    let client = agent.connect();
    let mut r = req(&[
        "sh",
        "-c",
        "test -t 0 && echo tty-yes; stty size; read x; stty size",
    ]);
    r.tty = Some(WindowSize {
        rows: 33,
        cols: 101,
    });
    let mut s = client.exec(r).unwrap();
    let mut seen = String::new();
    while !seen.contains("33 101") {
        if let Message::Stdout(d) = s.next_message(Duration::from_secs(10)).unwrap() {
            seen.push_str(&String::from_utf8_lossy(&d));
        }
    }
    s.resize(40, 120).unwrap();
    s.write_stdin(b"go\n").unwrap();
    let out = s.wait_output().unwrap();
    assert!(seen.contains("tty-yes"), "{seen}");
    assert!(
        out.stdout_text().contains("40 120"),
        "{}",
        out.stdout_text()
    );
    assert!(
        out.stderr.is_empty(),
        "a pty session has no separate stderr"
    );
}

#[test]
fn signals_reach_the_process_group_and_are_reported() {
    let agent = Agent::start();
    let client = agent.connect();
    let mut s = client
        .exec(req(&["sh", "-c", "echo started; exec sleep 30"]))
        .unwrap();
    assert_eq!(
        s.next_message(Duration::from_secs(10)).unwrap(),
        Message::Stdout(b"started\n".to_vec())
    );
    s.signal(libc::SIGTERM).unwrap();
    assert_eq!(
        s.wait_output().unwrap().status,
        ExitStatus::Signal(libc::SIGTERM)
    );
}

#[test]
fn several_sessions_run_at_once() {
    let agent = Agent::start();
    let client = agent.connect();
    let sessions: Vec<_> = (0..5)
        .map(|i| {
            let s = client
                .exec(req(&["sh", "-c", &format!("read x; echo $x-{i}")]))
                .unwrap();
            s.write_stdin(format!("n{i}\n").as_bytes()).unwrap();
            s
        })
        .collect();
    for (i, s) in sessions.into_iter().enumerate().rev() {
        assert_eq!(
            s.wait_output().unwrap().stdout_text(),
            format!("n{i}-{i}\n")
        );
    }
}

#[test]
fn missing_program_is_a_clear_error() {
    let agent = Agent::start();
    let err = agent.connect().run(&["no-such-program-xyz"]).unwrap_err();
    match err {
        ClientError::Agent(e) => {
            assert_eq!(e.kind, "exec-failed");
            assert!(e.message.contains("no-such-program-xyz"), "{}", e.message);
        }
        other => panic!("unexpected {other:?}"),
    }
    // The agent keeps serving afterwards.
    assert!(agent.connect().run(&["true"]).unwrap().success());
}

#[test]
fn detached_session_survives_disconnect_and_replays_on_attach() {
    let agent = Agent::start();
    let id = {
        let client = agent.connect();
        let mut s = client
            .exec_as(
                77,
                req(&["sh", "-c", "echo early; sleep 0.5; echo late; exit 4"]),
            )
            .unwrap();
        assert_eq!(
            s.next_message(Duration::from_secs(10)).unwrap(),
            Message::Stdout(b"early\n".to_vec())
        );
        assert_eq!(s.detach(Duration::from_secs(10)).unwrap(), Vec::new());
        s.id()
    };
    std::thread::sleep(Duration::from_millis(800));
    let client = agent.connect();
    let out = client.attach(id).unwrap().wait_output().unwrap();
    // Output produced while nobody was attached was buffered and is replayed.
    assert_eq!(out.stdout_text(), "late\n");
    assert_eq!(out.status, ExitStatus::Code(4));
}

/// Output racing the Detach (printed after the host sent it, before the agent applied it) is either handed back by
/// `detach` or replayed on attach: never lost, never both.
#[test]
fn output_racing_a_detach_is_neither_lost_nor_doubled() {
    let agent = Agent::start();
    for round in 0..20u32 {
        let id = 9000 + round;
        let mut before = Vec::new();
        {
            let client = agent.connect();
            let mut s = client
                .exec_as(
                    id,
                    req(&[
                        "sh",
                        "-c",
                        "read a; for i in 1 2 3 4 5; do echo \"$a$i\"; done",
                    ]),
                )
                .unwrap();
            // The line and the detach leave back to back, as when Ctrl-] follows typing within one read.
            s.write_stdin(b"x\n").unwrap();
            for m in s.detach(Duration::from_secs(10)).unwrap() {
                match m {
                    Message::Stdout(d) => before.extend_from_slice(&d),
                    Message::Exit(_) => break,
                    other => panic!("unexpected {other:?}"),
                }
            }
        }
        let after = match agent.connect().attach(id) {
            Ok(s) => s.wait_output().unwrap().stdout,
            // It finished before the detach was applied: all of it came back from `detach`.
            Err(ClientError::Agent(_)) => Vec::new(),
            Err(e) => panic!("attach: {e}"),
        };
        before.extend_from_slice(&after);
        assert_eq!(
            String::from_utf8_lossy(&before),
            "x1\nx2\nx3\nx4\nx5\n",
            "round {round}"
        );
    }
}

/// A background exec shows nothing but `Started` on its own connection; everything waits for the attach.
#[test]
fn background_session_buffers_from_the_first_byte() {
    let agent = Agent::start();
    {
        let client = agent.connect();
        let mut request = req(&["sh", "-c", "echo at-once; exit 6"]);
        request.background = true;
        let mut s = client.exec_as(555, request).unwrap();
        assert!(matches!(
            s.next_message(Duration::from_millis(500)),
            Err(ClientError::Timeout(_))
        ));
    }
    let out = agent.connect().attach(555).unwrap().wait_output().unwrap();
    assert_eq!(out.stdout_text(), "at-once\n");
    assert_eq!(out.status, ExitStatus::Code(6));
}

#[test]
fn undetached_session_is_hung_up_on_disconnect() {
    let agent = Agent::start();
    let pid = {
        let client = agent.connect();
        let s = client.exec(req(&["sleep", "30"])).unwrap();
        s.pid()
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    // The agent reaps it, so /proc/<pid> disappears.
    while Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            Instant::now() < deadline,
            "session {pid} still running after its connection closed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(matches!(
        agent.connect().attach(1).unwrap_err(),
        ClientError::Agent(_)
    ));
}

#[test]
fn forwarder_relays_bytes_to_the_host_endpoint() {
    let agent = Agent::start();
    let upstream = UnixListener::bind(agent.dir.path().join("proxy.sock")).unwrap();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = upstream.accept().unwrap();
        let mut req = [0u8; 18];
        conn.read_exact(&mut req).unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\n\r\n").unwrap();
        req
    });
    let mut tcp = TcpStream::connect(("127.0.0.1", agent.proxy_port)).unwrap();
    tcp.write_all(b"CONNECT x:443 HTTP").unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert_eq!(&server.join().unwrap(), b"CONNECT x:443 HTTP");
    assert_eq!(answer, "HTTP/1.1 200 OK\r\n\r\n");
}

#[test]
fn forwarder_answers_502_when_the_host_proxy_is_unreachable() {
    let agent = Agent::start();
    let mut tcp = TcpStream::connect(("127.0.0.1", agent.proxy_port)).unwrap();
    tcp.write_all(b"GET http://example.com/ HTTP/1.1\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 502"), "{answer}");
}

#[test]
fn sync_is_acknowledged_and_shutdown_stops_sessions_and_the_agent() {
    let mut agent = Agent::start();
    let client = agent.connect();
    client.sync(Duration::from_secs(10)).unwrap();
    let s = client.exec(req(&["sleep", "30"])).unwrap();
    let pid = s.pid();
    client.shutdown().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = agent.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "agent still running after Shutdown"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert!(status.success(), "{status}");
    // The session's process was stopped before the agent exited (it is gone or a zombie awaiting our init).
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    assert!(
        state.is_empty() || state.contains(") Z "),
        "session process still alive: {state}"
    );
}
