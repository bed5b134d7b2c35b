//! Runs one command through a running agent: `cargo run -p sbx-guest --example exec -- SOCKET PROGRAM [ARGS...]`.
//!
//! Start an agent first, e.g. `sbx-guest --mode process --listen unix:/tmp/agent.sock --proxy none`.

use std::io::Write;
use std::os::unix::net::UnixStream;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let socket = args.next().ok_or("usage: exec SOCKET PROGRAM [ARGS...]")?;
    let argv: Vec<String> = args.collect();
    if argv.is_empty() {
        return Err("usage: exec SOCKET PROGRAM [ARGS...]".into());
    }
    let client =
        sbx_proto::Client::connect_unix(UnixStream::connect(&socket)?, "sbx-guest example")?;
    eprintln!(
        "connected to {} (ready in {} ms)",
        client.agent(),
        client.ready().boot_ms
    );
    let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
    let out = client.run(&argv)?;
    std::io::stdout().write_all(&out.stdout)?;
    std::io::stderr().write_all(&out.stderr)?;
    std::process::exit(out.status.shell_code());
}
