//! `sbx-guest`: the in-sandbox agent binary. See the library docs for what it does.

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{}", sbx_guest::config::USAGE);
        return;
    }
    let config = match sbx_guest::GuestConfig::from_args(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sbx-guest: {e}\n{}", sbx_guest::config::USAGE);
            std::process::exit(2);
        }
    };
    if let Err(e) = sbx_guest::run(config) {
        eprintln!("{e}");
        std::process::exit(1);
    }
}
