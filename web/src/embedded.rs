//! The embedded default: a private PostgreSQL cluster started from the machine's own
//! PostgreSQL binaries (initdb, pg_ctl). Nothing is downloaded.
//!
//! When run as root, the server runs as the `postgres` user (PostgreSQL refuses to run as
//! root) through `runuser`. A cluster already running in the data folder (another `opora`
//! process started it) is attached to, not started twice, and left running on exit.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};

pub const DATABASE: &str = "opora";
pub const SUPERUSER: &str = "opora";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Normal settings: every commit reaches the disk.
    Durable,
    /// fsync off: for throwaway test clusters only.
    Throwaway,
}

#[derive(Debug)]
pub struct EmbeddedPostgres {
    data_dir: PathBuf,
    bin_dir: PathBuf,
    port: u16,
    run_as_postgres: bool,
    /// Whether this process started the server (and so stops it).
    owned: bool,
}

impl EmbeddedPostgres {
    /// Starts (initialising if needed) the cluster in `data_dir`, or attaches to it if it
    /// is already running.
    pub fn start(data_dir: &Path, durability: Durability) -> Result<Self> {
        Self::start_on(data_dir, durability, None)
    }

    /// As [`EmbeddedPostgres::start`], on `port` if given (a restart where clients expect
    /// it), otherwise on a free one.
    pub fn start_on(data_dir: &Path, durability: Durability, port: Option<u16>) -> Result<Self> {
        let bin_dir = find_bin_dir()?;
        let run_as_postgres = is_root();
        let mut data_dir = prepare(data_dir, run_as_postgres)?;
        if run_as_postgres && !reachable_by_postgres(&data_dir) {
            // A checkout in a private home folder: the postgres user cannot get in. Keep the
            // cluster in a folder of its own, named after the one asked for (stable, so the
            // same checkout finds its data again).
            let flat: String = data_dir
                .to_string_lossy()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect();
            let fallback = PathBuf::from("/var/tmp").join(format!("opora{flat}"));
            tracing::info!(
                asked = %data_dir.display(),
                using = %fallback.display(),
                "the postgres user cannot reach the data folder; using another"
            );
            data_dir = prepare(&fallback, true)?;
            if !reachable_by_postgres(&data_dir) {
                bail!(
                    "the postgres user cannot reach {}: set OPORA_DATA_DIR to a folder it can reach",
                    data_dir.display()
                );
            }
        }
        let mut pg = Self {
            data_dir,
            bin_dir,
            port: 0,
            run_as_postgres,
            owned: false,
        };
        if let Some(port) = pg.running_port() {
            tracing::info!(port, "attaching to the embedded PostgreSQL already running");
            pg.port = port;
            return Ok(pg);
        }
        if !pg.data_dir.join("PG_VERSION").exists() {
            pg.initdb()?;
        }
        pg.port = match port {
            Some(port) => port,
            None => free_port()?,
        };
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='' -c max_connections=200",
            pg.port
        );
        if durability == Durability::Throwaway {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log_file = pg.data_dir.join("server.log");
        pg.run(
            "pg_ctl",
            &[
                "-D",
                path_str(&pg.data_dir)?,
                "-l",
                path_str(&log_file)?,
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        )
        .with_context(|| format!("PostgreSQL did not start; see {}", log_file.display()))?;
        pg.owned = true;
        Ok(pg)
    }

    /// Where the cluster actually lives (see the fallback in `start`).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of a database on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{database}", self.port)
    }

    /// Stops the server if this process started it.
    pub fn stop(&mut self) -> Result<()> {
        if !self.owned {
            return Ok(());
        }
        self.owned = false;
        self.run(
            "pg_ctl",
            &["-D", path_str(&self.data_dir)?, "-m", "fast", "-w", "stop"],
        )
    }

    fn initdb(&self) -> Result<()> {
        tracing::info!(dir = %self.data_dir.display(), "initialising a private PostgreSQL cluster");
        self.run(
            "initdb",
            &[
                "-D",
                path_str(&self.data_dir)?,
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-instructions",
            ],
        )
    }

    /// The port of a server already running on this data folder, from `postmaster.pid`.
    fn running_port(&self) -> Option<u16> {
        let status = self
            .command("pg_ctl", &["-D", self.data_dir.to_str()?, "status"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .ok()?;
        if !status.success() {
            return None;
        }
        let pid_file = std::fs::read_to_string(self.data_dir.join("postmaster.pid")).ok()?;
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let binary = self.bin_dir.join(program);
        if self.run_as_postgres {
            let mut command = Command::new("runuser");
            command
                .args(["-u", "postgres", "--"])
                .arg(binary)
                .args(args);
            command
        } else {
            let mut command = Command::new(binary);
            command.args(args);
            command
        }
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<()> {
        let output = self
            .command(program, args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {program}"))?;
        if !output.status.success() {
            bail!(
                "{program} failed: {}{}",
                String::from_utf8_lossy(&output.stderr),
                String::from_utf8_lossy(&output.stdout)
            );
        }
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            tracing::warn!(%error, "could not stop the embedded PostgreSQL");
        }
    }
}

/// Where initdb and pg_ctl are: `OPORA_PG_BIN`, else the newest
/// /usr/lib/postgresql/<version>/bin (Debian keeps them off PATH), else PATH.
pub fn find_bin_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("OPORA_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Ok(bin);
    }
    let on_path = Command::new("sh")
        .args(["-c", "command -v initdb"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| PathBuf::from(s.trim()));
    match on_path.as_deref().and_then(Path::parent) {
        Some(dir) => Ok(dir.to_path_buf()),
        None => bail!(
            "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them with \
             `apt-get install postgresql` (scripts/run does this), set OPORA_PG_BIN, or set \
             DATABASE_URL to use an existing server."
        ),
    }
}

/// Creates the folder and, when running as root, gives it to the postgres user.
fn prepare(dir: &Path, run_as_postgres: bool) -> Result<PathBuf> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create data folder {}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", dir.display()))?;
    if run_as_postgres {
        chown_to_postgres(&dir)?;
    }
    Ok(dir)
}

fn reachable_by_postgres(dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-w"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false)
}

fn chown_to_postgres(dir: &Path) -> Result<()> {
    let status = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(dir)
        .status()
        .context("cannot run chown")?;
    if !status.success() {
        bail!("cannot give {} to the postgres user", dir.display());
    }
    // PostgreSQL insists on a private data folder.
    let status = Command::new("chmod").arg("700").arg(dir).status()?;
    if !status.success() {
        bail!("cannot make {} private", dir.display());
    }
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("no free local port")?;
    Ok(listener.local_addr()?.port())
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str()
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}
