//! Verifies the hash chains of an audit directory.
//!
//! ```text
//! cargo run -p sbx-audit --example verify -- DIR
//! ```
//!
//! Prints one verdict per writer stream (events, torn tail, head hash) and exits 0 when intact, 1 when tampering is
//! found (naming the kind and the first bad file and line), 2 on usage or read errors.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(dir), None) = (args.next(), args.next()) else {
        eprintln!("usage: verify DIR   (an sbx audit directory)");
        return ExitCode::from(2);
    };
    match sbx_audit::verify(&dir) {
        Ok(report) => {
            println!("{report}");
            if report.is_intact() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
