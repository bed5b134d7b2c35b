//! The in-sandbox agent of sbx (planned; see the crate README).

fn main() {
    eprintln!("sbx-guest: the in-sandbox agent is not built yet");
    std::process::exit(1);
}
