//! Builds a template into a store: `cargo run -p sbx-template --example build -- STORE [default|docker|host]`.
//! Steps go to stdout; tool output to stderr.

use sbx_template::{BuildOptions, Progress, TemplateStore, Variant};

struct Print;

impl Progress for Print {
    fn step(&mut self, index: usize, total: usize, what: &str) {
        println!("[{index}/{total}] {what}");
    }
    fn line(&mut self, line: &str) {
        eprintln!("  {line}");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let store = args
        .next()
        .ok_or("usage: build STORE [default|docker|host]")?;
    let variant = match args.next().as_deref() {
        None | Some("default") => Variant::Default,
        Some("docker") => Variant::Docker,
        Some("host") => Variant::Host,
        Some(other) => return Err(format!("unknown variant {other}").into()),
    };
    let store = TemplateStore::new(store);
    let built = store.build(
        variant.default_name(),
        variant,
        &BuildOptions::default(),
        &mut Print,
    )?;
    let m = &built.template.manifest;
    println!(
        "{} ({}) cached={} in {}s: rootfs {} MiB, image {} MiB allocated / {} MiB apparent",
        m.name,
        m.variant,
        built.cached,
        m.build_seconds,
        m.rootfs_bytes >> 20,
        m.image_bytes >> 20,
        m.image_size >> 20
    );
    Ok(())
}
