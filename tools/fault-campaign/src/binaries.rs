//! Where the four service binaries are, building them first when asked.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};

use crate::profile::Service;

/// The paths of the service binaries.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// The binaries in `dir` (a cargo profile directory such as `target/release`); fails
    /// naming the missing ones.
    pub fn in_dir(dir: &Path) -> anyhow::Result<Self> {
        let missing: Vec<&str> = Service::ALL
            .iter()
            .map(|service| service.binary())
            .filter(|name| !dir.join(executable(name)).is_file())
            .collect();
        if !missing.is_empty() {
            bail!(
                "{} not built in {} (build them with `cargo build --bins`)",
                missing.join(", "),
                dir.display()
            );
        }
        Ok(Self { dir: dir.to_owned() })
    }

    /// The profile directory the running executable lives in: `target/<profile>` for a binary,
    /// `target/<profile>/deps` → `target/<profile>` for a test.
    pub fn next_to_this_executable() -> anyhow::Result<PathBuf> {
        let exe = std::env::current_exe().context("the path of this executable")?;
        let mut dir = exe.parent().context("this executable's directory")?;
        if dir.file_name().is_some_and(|name| name == "deps") {
            dir = dir.parent().context("the profile directory")?;
        }
        Ok(dir.to_owned())
    }

    /// Builds the four binaries with cargo in the profile this executable was built with (a
    /// no-op when they are up to date), so the campaign never runs stale code.
    pub fn build() -> anyhow::Result<Self> {
        let dir = Self::next_to_this_executable()?;
        let release = dir.file_name().is_some_and(|name| name == "release");
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let mut command = std::process::Command::new(cargo);
        command.arg("build").arg("--bins");
        for service in Service::ALL {
            command.args(["--package", package(service)]);
        }
        if release {
            command.arg("--release");
        }
        let status = command.status().context("running cargo build")?;
        if !status.success() {
            bail!("cargo build of the service binaries failed ({status})");
        }
        Self::in_dir(&dir)
    }

    /// The path of `service`'s binary.
    pub fn path(&self, service: Service) -> PathBuf {
        self.dir.join(executable(service.binary()))
    }

    /// Where the campaign writes its logs: `target/fault-campaign` next to the binaries.
    pub fn log_root(&self) -> PathBuf {
        self.log_root_of("fault-campaign")
    }

    /// Where `tool` writes its logs: `target/<tool>` next to the binaries.
    pub fn log_root_of(&self, tool: &str) -> PathBuf {
        self.dir
            .parent()
            .map_or_else(|| self.dir.join(tool), |target| target.join(tool))
    }
}

fn executable(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// The cargo package that builds `service`'s binary.
fn package(service: Service) -> &'static str {
    match service {
        Service::Catalog => "shop-catalog",
        Service::User => "shop-user",
        Service::Order => "shop-order",
        Service::Gateway => "shop-gateway",
    }
}
