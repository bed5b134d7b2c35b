//! `sbx template build|ls|rm`: the read-only roots sandboxes start from (a thin layer over sbx-template).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use sbx_template::{BuildOptions, Built, Progress, Template, TemplateStore, Variant};

use crate::home::Home;
use crate::output;

/// `sbx template` subcommands.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum TemplateCommand {
    /// Build a template: the default Debian one (debootstrap, the agent CLIs from npm; needs root and takes minutes),
    /// its docker variant, or `host` (this host's programs, a second).
    #[command(
        after_help = "Examples:\n  sudo sbx template build\n  sudo sbx template build --docker\n  sbx template build host --variant host\n  sbx template build --force"
    )]
    Build {
        /// Template name (default: `default`, `default-docker` with --docker, `host` for the host variant).
        name: Option<String>,
        /// Add docker.io for a private dockerd inside the microVM.
        #[arg(long, conflicts_with = "variant")]
        docker: bool,
        /// The recipe: default, docker or host.
        #[arg(long, value_parser = ["default", "docker", "host"])]
        variant: Option<String>,
        /// Rebuild even when the template is already built.
        #[arg(long)]
        force: bool,
        /// Debian mirror (default http://deb.debian.org/debian).
        #[arg(long)]
        mirror: Option<String>,
    },
    /// List built templates.
    #[command(after_help = "Examples:\n  sbx template ls\n  sbx template ls --json")]
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a template (sandboxes created from it keep working until removed only if they are namespaces ones
    /// that copied it; remove them first).
    #[command(after_help = "Examples:\n  sbx template rm default-docker")]
    Rm {
        /// The template.
        name: String,
    },
}

/// The template store of this sbx home.
pub(crate) fn store(home: &Home) -> TemplateStore {
    TemplateStore::new(home.state.join("templates"))
}

pub(crate) fn run(cmd: TemplateCommand) -> Result<i32> {
    let home = Home::from_env()?;
    let store = store(&home);
    match cmd {
        TemplateCommand::Build {
            name,
            docker,
            variant,
            force,
            mirror,
        } => {
            let variant = match (docker, variant.as_deref()) {
                (true, _) | (false, Some("docker")) => Variant::Docker,
                (false, Some("host")) => Variant::Host,
                _ => Variant::Default,
            };
            let name = name.unwrap_or_else(|| variant.default_name().to_owned());
            let mut options = BuildOptions::default();
            options.force = force;
            options.mirror = mirror;
            let built = build(&store, &name, variant, &options)?;
            report(&built);
            Ok(0)
        }
        TemplateCommand::Ls { json } => ls(&store, json),
        TemplateCommand::Rm { name } => {
            remove_shifted_rootfs(&store, &name)?;
            store.remove(&name)?;
            eprintln!("removed template {name}");
            Ok(0)
        }
    }
}

/// Builds with a progress bar on stderr.
pub(crate) fn build(
    store: &TemplateStore,
    name: &str,
    variant: Variant,
    options: &BuildOptions,
) -> Result<Built> {
    let mut bar = Bar::new(name);
    let built = store
        .build(name, variant, options, &mut bar)
        .with_context(|| format!("cannot build template {name}"))?;
    bar.finish();
    Ok(built)
}

fn report(built: &Built) {
    let m = &built.template.manifest;
    if built.cached {
        eprintln!(
            "template {} is already built ({}; `--force` rebuilds it)",
            m.name, m.built_at
        );
    } else {
        eprintln!(
            "built template {} in {}s: root {} , image {} allocated",
            m.name,
            m.build_seconds,
            human(m.rootfs_bytes),
            human(m.image_bytes)
        );
    }
}

fn ls(store: &TemplateStore, json: bool) -> Result<i32> {
    let templates = store.list()?;
    if json {
        let rows: Vec<_> = templates.iter().map(json_row).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(0);
    }
    if templates.is_empty() {
        eprintln!("no templates built; `sbx template build` builds the default one");
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = templates
        .iter()
        .map(|t| {
            let m = &t.manifest;
            vec![
                m.name.clone(),
                m.variant.to_string(),
                m.built_at.clone(),
                human(m.rootfs_bytes),
                if t.image().is_some() {
                    human(m.image_bytes)
                } else {
                    "-".into()
                },
            ]
        })
        .collect();
    output::table(
        &mut std::io::stdout().lock(),
        &["NAME", "VARIANT", "BUILT", "ROOT", "IMAGE"],
        &rows,
    )?;
    Ok(0)
}

fn json_row(t: &Template) -> serde_json::Value {
    serde_json::json!({
        "name": t.manifest.name,
        "variant": t.manifest.variant,
        "built_at": t.manifest.built_at,
        "build_seconds": t.manifest.build_seconds,
        "rootfs": t.rootfs(),
        "rootfs_bytes": t.manifest.rootfs_bytes,
        "image": t.image(),
        "image_bytes": t.manifest.image_bytes,
        "packages": t.manifest.packages,
        "agent_clis": t.manifest.agent_clis,
    })
}

/// `1.2 GiB`-style sizes.
pub(crate) fn human(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The template a new sandbox uses: `-t NAME`, else `$SBX_TEMPLATE`, else `default`. The default (and `host`) are
/// built on first use after one line saying what and how long; another missing name is an error.
/// Returns the template's root directory.
pub(crate) fn resolve(home: &Home, requested: Option<&str>) -> Result<PathBuf> {
    let store = store(home);
    let from_env = std::env::var(crate::env_vars::SBX_TEMPLATE)
        .ok()
        .filter(|v| !v.is_empty());
    let name = requested
        .map(str::to_owned)
        .or(from_env)
        .unwrap_or_else(|| sbx_template::DEFAULT_NAME.to_owned());
    if let Some(t) = store.get(&name)? {
        return Ok(t.rootfs());
    }
    let variant = match name.as_str() {
        "default" => Variant::Default,
        "default-docker" => Variant::Docker,
        "host" => Variant::Host,
        _ => anyhow::bail!(
            "no template named `{name}` (`sbx template ls` lists them; `sbx template build {name}` builds one)"
        ),
    };
    eprintln!(
        "sbx: first use: building the {name} template ({}); this takes {} and happens once",
        match variant {
            Variant::Host => "from this host's programs",
            _ => "Debian with the agent CLIs",
        },
        variant.typical_duration()
    );
    let mut options = BuildOptions::default();
    // The host template only serves namespace sandboxes (tests, offline fallback): skip its image.
    options.no_image = variant == Variant::Host;
    Ok(build(&store, &name, variant, &options)?.template.rootfs())
}

/// A one-line progress bar on a terminal; plain step lines otherwise.
struct Bar {
    name: String,
    tty: bool,
    started: Instant,
    step: (usize, usize, String),
}

impl Bar {
    fn new(name: &str) -> Bar {
        Bar {
            name: name.to_owned(),
            tty: std::io::stderr().is_terminal(),
            started: Instant::now(),
            step: (0, 1, String::new()),
        }
    }

    fn draw(&self, detail: &str) {
        let (index, total, what) = &self.step;
        let width = 24;
        let filled = (index.saturating_sub(1) * width) / (*total).max(1);
        let detail: String = detail.chars().take(40).collect();
        let _ = write!(
            std::io::stderr(),
            "\r\x1b[2K[{}{}] {index}/{total} {what} ({}s) {detail}",
            "#".repeat(filled),
            "-".repeat(width - filled),
            self.started.elapsed().as_secs()
        );
    }

    fn finish(&self) {
        if self.tty {
            let _ = writeln!(std::io::stderr());
        }
    }
}

impl Progress for Bar {
    fn step(&mut self, index: usize, total: usize, what: &str) {
        self.step = (index, total, what.to_owned());
        if self.tty {
            self.draw("");
        } else {
            eprintln!("template {}: [{index}/{total}] {what}", self.name);
        }
    }

    fn line(&mut self, line: &str) {
        if self.tty {
            self.draw(line);
        }
    }
}

/// A template that namespace sandboxes used was shifted to their id mapping: most of its files then belong to the
/// user's subordinate ids, which an unprivileged user can delete only from a user namespace with that mapping. Root
/// deletes anything, so only unprivileged callers with a shifted rootfs go this way.
fn remove_shifted_rootfs(store: &TemplateStore, name: &str) -> Result<()> {
    let Some(template) = store.get(name)? else {
        return Ok(());
    };
    let rootfs = template.rootfs();
    let shifted = sbx_jail::shift::stamp_path(&rootfs).is_ok_and(|stamp| stamp.exists());
    if !shifted || rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let mapping = sbx_jail::idmap::choose(sbx_jail::MappingChoice::Auto, &rootfs);
    sbx_jail::shift::remove_tree(&rootfs, &mapping).with_context(|| {
        format!(
            "cannot remove template {name}'s root directory {}",
            rootfs.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_a_human_wrote_them() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 << 30), "3.0 GiB");
    }
}
