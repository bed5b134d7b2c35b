//! Writes a few decisions to a temporary audit directory (or reads DIR) and prints the `sbx policy log` view.
//!
//! ```text
//! cargo run -p sbx-audit --example policy_log            # demo data
//! cargo run -p sbx-audit --example policy_log -- DIR     # an existing audit directory
//! cargo run -p sbx-audit --example policy_log -- DIR --json
//! ```

use std::error::Error;

use sbx_audit::{AuditLog, Decision, Event, Filter, Proxy, Reader, WriterConfig};

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let demo;
    let dir = match args.iter().find(|a| !a.starts_with("--")) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            demo = tempfile::tempdir()?;
            write_demo(demo.path())?;
            demo.path().to_path_buf()
        }
    };
    let (view, issues) = Reader::open(&dir)?.aggregate(&Filter::all());
    for issue in issues {
        eprintln!("warning: {issue}");
    }
    if json {
        println!("{}", view.to_json());
    } else {
        print!("{view}");
    }
    Ok(())
}

fn write_demo(dir: &std::path::Path) -> Result<(), Box<dyn Error>> {
    let (audit, guard) = AuditLog::open(dir, WriterConfig::default())?;
    for _ in 0..3 {
        audit.record(
            Event::network("web-1", "evil.example", 443, Proxy::Forward, Decision::Deny).explained(
                None,
                None,
                "default-deny",
            ),
        )?;
    }
    audit.record(
        Event::network("web-1", "10.0.0.5", 5432, Proxy::Raw, Decision::Deny).explained(
            None,
            None,
            "private-address",
        ),
    )?;
    audit.record(
        Event::network(
            "web-1",
            "api.github.com",
            443,
            Proxy::Transparent,
            Decision::Allow,
        )
        .explained(Some("*.github.com"), Some("team"), "matched-allow"),
    )?;
    audit.record(Event::secret_injected(
        "web-1",
        "anthropic",
        "api.anthropic.com",
    ))?;
    guard.close()?;
    Ok(())
}
