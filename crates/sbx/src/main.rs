//! `sbx`: run coding agents in disposable sandboxes with policy-controlled egress.

fn main() {
    println!("sbx {}", env!("CARGO_PKG_VERSION"));
}
