//! The template store: one directory per template (`<name>/rootfs`, `<name>/rootfs.ext4`, `<name>/manifest.json`),
//! built under a hidden temporary name and renamed into place, so a template is either complete or absent.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::error::{TemplateError, io};
use crate::manifest::{MANIFEST_FORMAT, Manifest, now_rfc3339};
use crate::tools::disk_usage;
use crate::{Progress, Variant, debian, host, image};

/// Options of [`TemplateStore::build`].
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct BuildOptions {
    /// Debian mirror (default [`debian::DEFAULT_MIRROR`]).
    pub mirror: Option<String>,
    /// Rebuild even when a matching template is cached.
    pub force: bool,
    /// Skip the ext4 image (namespace-only hosts save the space and the minute it takes).
    pub no_image: bool,
}

/// A built template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// Its directory in the store.
    pub dir: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
}

impl Template {
    /// The root directory (the namespace backend's read-only lower layer).
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// The ext4 image (the microVM's read-only root disk), when one was made.
    pub fn image(&self) -> Option<PathBuf> {
        let image = self.dir.join("rootfs.ext4");
        image.is_file().then_some(image)
    }
}

/// What [`TemplateStore::build`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    /// The template.
    pub template: Template,
    /// `true` when a matching template was already built and nothing was done.
    pub cached: bool,
}

/// A directory of templates.
#[derive(Debug, Clone)]
pub struct TemplateStore {
    root: PathBuf,
}

/// Checks a template name: 1-64 characters of `a-z0-9-_.`, not starting with a dot (hidden names are the store's).
pub fn check_name(name: &str) -> Result<(), TemplateError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(TemplateError::InvalidName { name: name.into() })
    }
}

/// The recipe identifier of a variant; bump the revision when a recipe changes so cached templates are rebuilt.
pub fn recipe(variant: Variant) -> String {
    match variant {
        Variant::Host => "host-binaries/1".into(),
        Variant::Default | Variant::Docker => format!("debian-{}/1", debian::SUITE),
    }
}

impl TemplateStore {
    /// A store rooted at `root` (created on first build).
    pub fn new(root: impl Into<PathBuf>) -> TemplateStore {
        TemplateStore { root: root.into() }
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of template `name` (whether built or not).
    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The built template `name`, if any.
    pub fn get(&self, name: &str) -> Result<Option<Template>, TemplateError> {
        check_name(name)?;
        let dir = self.dir(name);
        let manifest = dir.join("manifest.json");
        if !manifest.is_file() {
            return Ok(None);
        }
        Ok(Some(Template {
            manifest: Manifest::load(&manifest)?,
            dir,
        }))
    }

    /// All built templates, sorted by name. Hidden entries (builds in progress) are skipped.
    pub fn list(&self) -> Result<Vec<Template>, TemplateError> {
        let entries = match std::fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io("read", &self.root)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io("read", &self.root))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if check_name(&name).is_err() {
                continue;
            }
            if let Some(template) = self.get(&name)? {
                out.push(template);
            }
        }
        out.sort_by(|a, b| a.manifest.name.cmp(&b.manifest.name));
        Ok(out)
    }

    /// Removes template `name`: it disappears at once (renamed away), then its files are deleted.
    pub fn remove(&self, name: &str) -> Result<(), TemplateError> {
        check_name(name)?;
        let _lock = self.lock(name)?;
        let dir = self.dir(name);
        if !dir.exists() {
            return Err(TemplateError::NotFound {
                name: name.into(),
                root: self.root.clone(),
            });
        }
        let doomed = self
            .root
            .join(format!(".{name}.removing.{}", std::process::id()));
        std::fs::rename(&dir, &doomed).map_err(io("move away", &dir))?;
        std::fs::remove_dir_all(&doomed).map_err(io("remove", &doomed))
    }

    /// Builds template `name` from `variant`, or returns the cached one when a template of the same variant and
    /// recipe is already built (unless `options.force`). Concurrent builds of one name wait for each other.
    pub fn build(
        &self,
        name: &str,
        variant: Variant,
        options: &BuildOptions,
        progress: &mut dyn Progress,
    ) -> Result<Built, TemplateError> {
        check_name(name)?;
        std::fs::create_dir_all(&self.root).map_err(io("create", &self.root))?;
        let _lock = self.lock(name)?;
        if !options.force
            && let Some(template) = self.get(name)?
            && template.manifest.variant == variant
            && template.manifest.recipe == recipe(variant)
            && (options.no_image || template.image().is_some())
        {
            return Ok(Built {
                template,
                cached: true,
            });
        }
        let started = Instant::now();
        let partial = self
            .root
            .join(format!(".{name}.partial.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&partial);
        let result = self.build_into(&partial, name, variant, options, progress, started);
        let manifest = match result {
            Ok(manifest) => manifest,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&partial);
                return Err(e);
            }
        };
        let dir = self.dir(name);
        if dir.exists() {
            let old = self
                .root
                .join(format!(".{name}.old.{}", std::process::id()));
            std::fs::rename(&dir, &old).map_err(io("move away", &dir))?;
            let _ = std::fs::remove_dir_all(&old);
        }
        std::fs::rename(&partial, &dir).map_err(io("move into place", &partial))?;
        Ok(Built {
            template: Template { dir, manifest },
            cached: false,
        })
    }

    fn build_into(
        &self,
        partial: &Path,
        name: &str,
        variant: Variant,
        options: &BuildOptions,
        progress: &mut dyn Progress,
        started: Instant,
    ) -> Result<Manifest, TemplateError> {
        let rootfs = partial.join("rootfs");
        std::fs::create_dir_all(&rootfs).map_err(io("create", &rootfs))?;
        let image_steps = usize::from(!options.no_image);
        let (packages, clis) = match variant {
            Variant::Host => {
                progress.step(1, 1 + image_steps, "copy this host's programs");
                host::host_template(&rootfs)?;
                (Vec::new(), Vec::new())
            }
            Variant::Default | Variant::Docker => {
                let mirror = options.mirror.as_deref().unwrap_or(debian::DEFAULT_MIRROR);
                debian::build_rootfs(
                    &rootfs,
                    variant,
                    mirror,
                    progress,
                    debian::STEPS + image_steps,
                )?;
                (
                    debian::packages(variant)
                        .iter()
                        .map(|p| (*p).to_owned())
                        .collect(),
                    debian::AGENT_CLIS.iter().map(|p| (*p).to_owned()).collect(),
                )
            }
        };
        let (image_bytes, image_size) = if options.no_image {
            (0, 0)
        } else {
            let total = if variant == Variant::Host {
                2
            } else {
                debian::STEPS + 1
            };
            progress.step(total, total, "make the ext4 image (mkfs.ext4 -d)");
            let image_path = partial.join("rootfs.ext4");
            image::make_ext4(&rootfs, &image_path, progress)?;
            let meta = std::fs::metadata(&image_path).map_err(io("stat", &image_path))?;
            (disk_usage(&image_path), meta.len())
        };
        let manifest = Manifest {
            format: MANIFEST_FORMAT,
            name: name.into(),
            variant,
            recipe: recipe(variant),
            built_at: now_rfc3339(),
            build_seconds: started.elapsed().as_secs(),
            rootfs_bytes: disk_usage(&rootfs),
            image_bytes,
            image_size,
            packages,
            agent_clis: clis,
            sbx_version: env!("CARGO_PKG_VERSION").into(),
        };
        manifest.store(&partial.join("manifest.json"))?;
        Ok(manifest)
    }

    /// An exclusive lock on template `name` (held until dropped).
    fn lock(&self, name: &str) -> Result<File, TemplateError> {
        std::fs::create_dir_all(&self.root).map_err(io("create", &self.root))?;
        let path = self.root.join(format!(".{name}.lock"));
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("open", &path))?;
        rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io("lock", &path)(e.into()))?;
        Ok(file)
    }
}
