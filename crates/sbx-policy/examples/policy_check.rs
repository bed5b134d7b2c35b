//! Checks requests against policy files.
//!
//! ```sh
//! printf 'GET https://api.github.com/repos/acme/x\n' |
//!   cargo run -q -p sbx-policy --example policy_check -- company.toml team.toml user.toml
//! ```
//!
//! Files are given highest authority first. Each stdin line is `METHOD URL`; each output line is
//! `allow` or `deny`, a tab, and the explanation. Exit 0 even when requests are denied; exit 2
//! (with `file:line:col: message` on stderr) when a file is invalid.

use std::io::{self, BufWriter};
use std::process::ExitCode;

fn main() -> ExitCode {
    let files: Vec<String> = std::env::args().skip(1).collect();
    if files.is_empty() {
        eprintln!("usage: policy_check FILE... < requests (one `METHOD URL` per line)");
        return ExitCode::from(2);
    }
    let policy = match sbx_policy::batch::load_policy(&files) {
        Ok(policy) => policy,
        Err(error) => {
            eprintln!("{error}");
            return ExitCode::from(2);
        }
    };
    let stdout = io::stdout();
    match sbx_policy::batch::run(&policy, io::stdin().lock(), BufWriter::new(stdout.lock())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("policy_check: {error}");
            ExitCode::from(1)
        }
    }
}
