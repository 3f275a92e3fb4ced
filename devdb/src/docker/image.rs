//! The dev image: PostgreSQL from Debian's own packages in a minimal root filesystem, built on
//! this machine with debootstrap and imported into Docker, because the daemon may have no
//! registry to pull from.
//!
//! One image per supported major version, tagged `tandem-dev-postgres:<major>`, built once and
//! reused. The image carries a label with a digest of its recipe (suite, package, the
//! entrypoint and prune scripts, the image settings); an image whose label differs was built
//! by another version of tandem and counts as missing, so [`ensure`] rebuilds it.
//!
//! Building needs root (debootstrap chroots), the `debootstrap` program and Debian's mirror;
//! it takes about a minute. Concurrent builds of one tag, from any number of processes, are
//! serialized by an flock(2) on a file in the temporary directory: whoever waited finds the
//! image present and does not build it again.

use std::collections::VecDeque;
use std::fmt;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::str::FromStr;

use futures_util::StreamExt;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg, OFlag};
use sha2::{Digest, Sha256};
use testcontainers::bollard;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;

use super::error::{docker_host, from_bollard, tail, DockerError};

/// A PostgreSQL major version the dev image can be built for.
///
/// Each comes from the Debian release that ships it as its own server package, so the image
/// gets Debian's build and security updates and nothing has to be compiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PgMajor {
    /// PostgreSQL 15, package `postgresql-15` from Debian 12 (bookworm).
    V15,
    /// PostgreSQL 17, package `postgresql-17` from Debian 13 (trixie).
    V17,
}

impl PgMajor {
    /// Every supported version, oldest first.
    pub const ALL: [PgMajor; 2] = [PgMajor::V15, PgMajor::V17];

    /// The major version number, as in `server_version_num / 10000`.
    pub fn number(self) -> u32 {
        match self {
            PgMajor::V15 => 15,
            PgMajor::V17 => 17,
        }
    }

    /// The Debian release whose archive has this version's server package.
    fn suite(self) -> &'static str {
        match self {
            PgMajor::V15 => "bookworm",
            PgMajor::V17 => "trixie",
        }
    }

    fn package(self) -> String {
        format!("postgresql-{}", self.number())
    }
}

impl fmt::Display for PgMajor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.number())
    }
}

impl FromStr for PgMajor {
    type Err = DockerError;

    /// Parse "15" or "17" (what `--pg` and `--dev docker:VERSION` take).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PgMajor::ALL
            .into_iter()
            .find(|m| m.to_string() == s.trim())
            .ok_or_else(|| DockerError::UnsupportedMajor {
                given: s.to_owned(),
                supported: PgMajor::ALL
                    .iter()
                    .map(|m| m.to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// The image's repository; the tag is the major version.
pub(crate) const REPOSITORY: &str = "tandem-dev-postgres";

/// The image's name and tag, e.g. `tandem-dev-postgres:15`.
pub fn tag(major: PgMajor) -> String {
    format!("{REPOSITORY}:{major}")
}

/// Runs in every container: initdb with the password it is given, then the server.
const ENTRYPOINT: &str = include_str!("entrypoint.sh");
/// Where the entrypoint lives in the image.
const ENTRYPOINT_PATH: &str = "usr/local/bin/tandem-entrypoint";
/// Runs once in the fresh root, under chroot, to drop what the server never reads.
const PRUNE: &str = include_str!("prune.sh");

/// The label holding the recipe digest (see the module docs).
const RECIPE_LABEL: &str = "tandem.dev-image.recipe";

/// Where Debian's packages come from unless `TANDEM_DEBIAN_MIRROR` says otherwise.
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// How many lines of a failed step's output an error shows.
const TAIL_LINES: usize = 25;

/// The Dockerfile instructions `docker import` applies to the root filesystem, without the
/// recipe label (which is computed from them).
fn image_settings(major: PgMajor) -> Vec<String> {
    vec![
        format!(r#"ENTRYPOINT ["/{ENTRYPOINT_PATH}"]"#),
        "EXPOSE 5432".to_owned(),
        format!(
            "ENV PATH=/usr/lib/postgresql/{major}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:\
             /usr/bin:/sbin:/bin"
        ),
        "ENV PGDATA=/var/lib/postgresql/data".to_owned(),
        "ENV LANG=C.UTF-8".to_owned(),
    ]
}

/// A digest of everything that decides what the image contains and does.
fn recipe(major: PgMajor) -> String {
    let mut h = Sha256::new();
    for part in [major.suite(), &major.package(), ENTRYPOINT, PRUNE] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    for setting in image_settings(major) {
        h.update(setting.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..8])
}

/// The Docker client testcontainers uses, so that building and running agree on the daemon.
pub(crate) async fn docker_client(action: &str) -> Result<bollard::Docker, DockerError> {
    testcontainers::core::client::docker_client_instance()
        .await
        .map_err(|e| DockerError::DaemonUnreachable {
            host: docker_host(),
            action: action.to_owned(),
            source: Box::new(e),
        })
}

/// The tagged image's id and recipe label, or `None` when there is no such tag.
async fn inspect(
    docker: &bollard::Docker,
    major: PgMajor,
) -> Result<Option<(String, Option<String>)>, DockerError> {
    let tag = tag(major);
    match docker.inspect_image(&tag).await {
        Ok(image) => {
            let recipe = image
                .config
                .and_then(|c| c.labels)
                .and_then(|mut labels| labels.remove(RECIPE_LABEL));
            Ok(Some((image.id.unwrap_or_default(), recipe)))
        }
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 404, ..
        }) => Ok(None),
        Err(e) => Err(from_bollard(&format!("look up image {tag}"), e)),
    }
}

/// Whether `tandem-dev-postgres:<major>` exists and was built from this version's recipe.
///
/// An image built by another version of tandem counts as missing (see the module docs).
pub async fn image_present(major: PgMajor) -> Result<bool, DockerError> {
    let docker = docker_client(&format!("look up image {}", tag(major))).await?;
    Ok(matches!(
        inspect(&docker, major).await?,
        Some((_, Some(label))) if label == recipe(major)
    ))
}

/// Build the image when it is missing (see [`image_present`]); otherwise do nothing.
pub async fn ensure(major: PgMajor, progress: &dyn Fn(&str)) -> Result<(), DockerError> {
    ensure_with(major, progress).await
}

/// [`ensure`] for any progress callback: with a `Sync` one the future is `Send`, which
/// `container::start` needs (a `&dyn Fn` held across an await makes a future `!Send`).
pub(crate) async fn ensure_with<P>(major: PgMajor, progress: &P) -> Result<(), DockerError>
where
    P: Fn(&str) + ?Sized,
{
    if image_present(major).await? {
        return Ok(());
    }
    build_with(major, false, progress).await
}

/// Build `tandem-dev-postgres:<major>` from Debian's packages and import it into Docker.
///
/// With `force`, rebuild even when a current image is present (to pick up Debian's updates);
/// otherwise a build that finds the image present once it holds the build lock (because
/// another process built it meanwhile) returns at once. `progress` receives a line per step
/// (starting with "building" or "built") and, between them, every line debootstrap prints
/// (several hundred, starting with "I: "), for a display that shows the latest.
///
/// The root filesystem is assembled in a temporary directory under /var/tmp, removed afterwards
/// whether the build succeeds or not. An image this replaces is removed unless a container
/// still uses it.
pub async fn build(
    major: PgMajor,
    force: bool,
    progress: &dyn Fn(&str),
) -> Result<(), DockerError> {
    build_with(major, force, progress).await
}

/// [`build`] for any progress callback (see [`ensure_with`]).
async fn build_with<P>(major: PgMajor, force: bool, progress: &P) -> Result<(), DockerError>
where
    P: Fn(&str) + ?Sized,
{
    let tag = tag(major);
    // Ask the daemon first: it is the likeliest thing to be missing, and finding out after
    // a minute of debootstrap would waste that minute.
    let docker = docker_client(&format!("build image {tag}")).await?;
    docker
        .ping()
        .await
        .map_err(|e| from_bollard(&format!("build image {tag}"), e))?;

    let _lock = build_lock(major, progress).await?;
    let existing = inspect(&docker, major).await?;
    if !force {
        if let Some((_, Some(label))) = &existing {
            if *label == recipe(major) {
                progress(&format!(
                    "{tag} is present (built by another process meanwhile)"
                ));
                return Ok(());
            }
        }
    }

    let debootstrap = find_program("debootstrap").ok_or(DockerError::DebootstrapMissing)?;
    if !nix::unistd::geteuid().is_root() {
        return Err(DockerError::NeedsRoot {
            major: major.to_string(),
        });
    }

    let root = BuildRoot::new()?;
    let mirror = std::env::var("TANDEM_DEBIAN_MIRROR").unwrap_or_else(|_| DEFAULT_MIRROR.into());
    progress(&format!(
        "building {tag}: debootstrap {} with {} from {mirror} into {}",
        major.suite(),
        major.package(),
        root.path().display()
    ));
    let mut cmd = Command::new(&debootstrap);
    cmd.arg("--variant=minbase")
        .arg(format!("--include={}", major.package()))
        .arg("--components=main")
        .arg(major.suite())
        .arg(root.path())
        .arg(&mirror);
    if let Err(failed) = run_step(cmd, progress).await? {
        return Err(if failed.looks_like_network_trouble() {
            DockerError::MirrorUnreachable {
                mirror,
                suite: major.suite().to_owned(),
                tail: failed.tail,
            }
        } else {
            failed.into_error(&tag, "debootstrap")
        });
    }

    progress(&format!(
        "building {tag}: adding the entrypoint, pruning docs and caches"
    ));
    install_file(root.path(), ENTRYPOINT_PATH, ENTRYPOINT, 0o755)?;
    install_file(root.path(), "tmp/tandem-prune.sh", PRUNE, 0o755)?;
    let mut cmd = Command::new("chroot");
    cmd.arg(root.path())
        .args(["/bin/sh", "/tmp/tandem-prune.sh"])
        .arg(major.to_string());
    if let Err(failed) = run_step(cmd, progress).await? {
        return Err(failed.into_error(&tag, "pruning the root filesystem (prune.sh)"));
    }

    progress(&format!("building {tag}: importing into Docker"));
    import(&docker, major, root.path()).await?;
    drop(root);

    if let Some((old_id, _)) = existing {
        let replaced = inspect(&docker, major)
            .await?
            .is_some_and(|(id, _)| id != old_id);
        if replaced {
            // A container may still run from it; then it stays, dangling, for `docker image
            // prune` to collect.
            let _ = docker
                .remove_image(
                    &old_id,
                    None::<bollard::query_parameters::RemoveImageOptions>,
                    None,
                )
                .await;
        }
    }
    progress(&format!("built {tag}"));
    Ok(())
}

/// Hold the build lock of `major`'s tag, waiting (and saying so) while another process holds
/// it.
async fn build_lock<P>(major: PgMajor, progress: &P) -> Result<Flock<File>, DockerError>
where
    P: Fn(&str) + ?Sized,
{
    let path = std::env::temp_dir().join(format!("{REPOSITORY}-{major}.build.lock"));
    // Any user may build or wait, so the file is created world-writable; opening an existing
    // one read-only is enough for flock and works for a file another user created.
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let file = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o666)
                .open(&path)
                .map_err(DockerError::io("create the build lock", &path))?;
            // The mode above passed through the umask.
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o666));
            file
        }
        Err(e) => return Err(DockerError::io("open the build lock", &path)(e)),
    };
    let lock_err = |errno: Errno| DockerError::io("lock", path.clone())(errno.into());
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(lock),
        Err((file, Errno::EWOULDBLOCK)) => {
            progress(&format!(
                "another process is building {}; waiting for it to finish",
                tag(major)
            ));
            tokio::task::spawn_blocking(move || Flock::lock(file, FlockArg::LockExclusive))
                .await
                .map_err(|e| DockerError::io("lock", path.clone())(std::io::Error::other(e)))?
                .map_err(|(_, errno)| lock_err(errno))
        }
        Err((_, errno)) => Err(lock_err(errno)),
    }
}

/// `name` on PATH, or in the sbin directories a non-root PATH often lacks.
fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Write `contents` to `rel` under the root filesystem with `mode`.
fn install_file(root: &Path, rel: &str, contents: &str, mode: u32) -> Result<(), DockerError> {
    let path = root.join(rel);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(DockerError::io("create", dir))?;
    }
    std::fs::write(&path, contents).map_err(DockerError::io("write", &path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
        .map_err(DockerError::io("chmod", &path))
}

/// Tar the root filesystem and stream it to the daemon as a new image (what `docker import`
/// does), tagged and labelled.
async fn import(docker: &bollard::Docker, major: PgMajor, root: &Path) -> Result<(), DockerError> {
    let tag = tag(major);
    // /dev, /proc and /sys are filled in by the container runtime; debootstrap's device
    // nodes would only trouble storage drivers that cannot create them.
    let mut tar = Command::new("tar")
        .arg("--numeric-owner")
        .args([
            "--exclude=./dev/*",
            "--exclude=./proc/*",
            "--exclude=./sys/*",
        ])
        .arg("-C")
        .arg(root)
        .args(["-cf", "-", "."])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(DockerError::io("run tar on", root))?;
    let (Some(stdout), Some(mut stderr)) = (tar.stdout.take(), tar.stderr.take()) else {
        return Err(DockerError::io("read tar's output for", root)(
            std::io::Error::other("tar's pipes were not set up"),
        ));
    };

    let mut settings = image_settings(major);
    settings.push(format!(
        "LABEL {RECIPE_LABEL}={} tandem.dev-image.pg-major={major}",
        recipe(major)
    ));
    let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
        .from_src("-")
        .repo(REPOSITORY)
        .tag(&major.to_string())
        .changes(settings)
        .build();
    let body = bollard::body_try_stream(tokio_util::io::ReaderStream::new(stdout));
    let mut stream = docker.create_image(Some(options), Some(body), None);
    let mut daemon_error = None;
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            daemon_error = Some(e);
            break;
        }
    }
    drop(stream);

    let mut tar_stderr = String::new();
    let _ = stderr.read_to_string(&mut tar_stderr).await;
    let status = tar
        .wait()
        .await
        .map_err(DockerError::io("wait for tar on", root))?;
    match daemon_error {
        Some(e @ bollard::errors::Error::DockerStreamError { .. }) => {
            Err(DockerError::BuildFailed {
                tag,
                step: "docker import".into(),
                status: "the daemon rejected the image".into(),
                tail: e.to_string(),
            })
        }
        Some(e) => Err(from_bollard(&format!("import image {tag}"), e)),
        None if !status.success() => Err(DockerError::BuildFailed {
            tag,
            step: "tar of the root filesystem".into(),
            status: status.to_string(),
            tail: tail(&tar_stderr, TAIL_LINES),
        }),
        None => Ok(()),
    }
}

/// A build step that exited unsuccessfully, with the end of its output.
struct StepFailure {
    program: String,
    status: String,
    tail: String,
}

impl StepFailure {
    /// Whether the output says the mirror could not be reached, rather than the build being
    /// wrong (debootstrap's and apt's wording).
    fn looks_like_network_trouble(&self) -> bool {
        [
            "Failed getting release file",
            "Couldn't download",
            "Could not resolve",
            "Temporary failure resolving",
            "Connection refused",
            "Connection timed out",
            "Network is unreachable",
        ]
        .iter()
        .any(|needle| self.tail.contains(needle))
    }

    fn into_error(self, tag: &str, step: &str) -> DockerError {
        DockerError::BuildFailed {
            tag: tag.to_owned(),
            step: format!("{step} ({})", self.program),
            status: self.status,
            tail: self.tail,
        }
    }
}

/// Run `cmd` with stdout and stderr merged into one pipe, handing each line to `progress`.
///
/// The outer `Result` is for failing to run it at all; the inner one for it exiting
/// unsuccessfully, with the end of its output. The child is killed if this future is dropped.
async fn run_step<P>(mut cmd: Command, progress: &P) -> Result<Result<(), StepFailure>, DockerError>
where
    P: Fn(&str) + ?Sized,
{
    let program = cmd.as_std().get_program().to_string_lossy().into_owned();
    let pipe_err = |e: std::io::Error| DockerError::io("set up a pipe for", program.clone())(e);
    // Close-on-exec, so that no other child started meanwhile holds the write end open.
    let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| pipe_err(e.into()))?;
    let tx2 = tx.try_clone().map_err(pipe_err)?;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::from(tx))
        .stderr(Stdio::from(tx2))
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            DockerError::io("find the program", program.clone())(e)
        } else {
            DockerError::io("run", program.clone())(e)
        }
    })?;
    // The command keeps the parent's copies of the write end; without dropping it the pipe
    // would never reach end-of-file.
    drop(cmd);

    let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(rx).map_err(pipe_err)?;
    let mut reader = BufReader::new(rx);
    let mut last: VecDeque<String> = VecDeque::with_capacity(TAIL_LINES);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = reader.read_until(b'\n', &mut buf).await.map_err(pipe_err)?;
        if n == 0 {
            break;
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end();
        progress(line);
        if last.len() == TAIL_LINES {
            last.pop_front();
        }
        last.push_back(line.to_owned());
    }
    let status = child
        .wait()
        .await
        .map_err(|e| DockerError::io("wait for", program.clone())(e))?;
    if status.success() {
        Ok(Ok(()))
    } else {
        Ok(Err(StepFailure {
            program,
            status: status.to_string(),
            tail: Vec::from(last).join("\n"),
        }))
    }
}

/// The directory debootstrap fills, removed on drop.
///
/// A debootstrap that failed or was killed can leave /proc, /sys or bind-mounted device nodes
/// mounted inside it, and removing the tree through a live mount would reach the host's
/// files; so drop unmounts whatever is mounted below the directory first, and when that fails
/// leaves the directory in place and says so.
struct BuildRoot {
    dir: Option<tempfile::TempDir>,
}

impl BuildRoot {
    fn new() -> Result<Self, DockerError> {
        let parent = Path::new("/var/tmp");
        let dir = tempfile::Builder::new()
            .prefix("tandem-dev-image-")
            .tempdir_in(parent)
            .map_err(DockerError::io("create a build directory in", parent))?;
        Ok(BuildRoot { dir: Some(dir) })
    }

    fn path(&self) -> &Path {
        match &self.dir {
            Some(dir) => dir.path(),
            None => Path::new("/nonexistent"),
        }
    }
}

impl Drop for BuildRoot {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        let still_mounted = unmount_below(dir.path());
        if still_mounted.is_empty() {
            if let Err(e) = dir.close() {
                tracing::warn!("could not remove the dev image's build directory: {e}");
            }
        } else {
            let kept = dir.keep();
            tracing::warn!(
                "left {} in place because {} is still mounted inside it: unmount, then remove it",
                kept.display(),
                still_mounted.join(", ")
            );
        }
    }
}

/// Unmount (lazily) every mount point at or below `root`, deepest first; return those that
/// are still mounted afterwards.
fn unmount_below(root: &Path) -> Vec<String> {
    let root = root.canonicalize().unwrap_or_else(|_| root.to_path_buf());
    let mut points = mount_points_below(&root);
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for point in &points {
        let _ = nix::mount::umount2(point.as_path(), nix::mount::MntFlags::MNT_DETACH);
    }
    mount_points_below(&root)
        .into_iter()
        .map(|p| p.display().to_string())
        .collect()
}

/// The mount points at or below `root`, from /proc/self/mountinfo.
fn mount_points_below(root: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|p| p.starts_with(root))
        .collect()
}

/// mountinfo writes space, tab, newline and backslash in paths as `\ooo` octal escapes.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|d| u8::from_str_radix(d, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_supported_majors_and_lists_them_otherwise() {
        assert_eq!("15".parse::<PgMajor>().ok(), Some(PgMajor::V15));
        assert_eq!("17".parse::<PgMajor>().ok(), Some(PgMajor::V17));
        let err = match "16".parse::<PgMajor>() {
            Ok(m) => panic!("16 parsed as {m}"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("`16`") && err.contains("15, 17"), "{err}");
    }

    #[test]
    fn tags_name_the_major() {
        assert_eq!(tag(PgMajor::V15), "tandem-dev-postgres:15");
        assert_eq!(tag(PgMajor::V17), "tandem-dev-postgres:17");
    }

    #[test]
    fn recipes_differ_between_majors() {
        assert_ne!(recipe(PgMajor::V15), recipe(PgMajor::V17));
        assert_eq!(recipe(PgMajor::V15), recipe(PgMajor::V15));
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo(r"/var/tmp/a\040b"), "/var/tmp/a b");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
        assert_eq!(unescape_mountinfo(r"/trailing\"), r"/trailing\");
    }

    #[test]
    fn network_trouble_is_told_apart_from_a_broken_build() {
        let failure = |tail: &str| StepFailure {
            program: "debootstrap".into(),
            status: "exit status: 1".into(),
            tail: tail.into(),
        };
        assert!(failure(
            "E: Failed getting release file http://127.0.0.1:9/debian/dists/bookworm/Release"
        )
        .looks_like_network_trouble());
        assert!(!failure("E: Couldn't find these debs: postgresql-99").looks_like_network_trouble());
    }

    /// A build directory whose debootstrap died with /proc still mounted inside must not be
    /// removed through the mount, and must be removed once it is unmounted.
    #[test]
    fn build_root_unmounts_leftovers_before_removing() {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: mounting needs root");
            return;
        }
        let root = match BuildRoot::new() {
            Ok(root) => root,
            Err(e) => panic!("{}", crate::chain(&e)),
        };
        let path = root.path().to_path_buf();
        let proc_dir = path.join("proc");
        std::fs::create_dir(&proc_dir).expect("create proc dir");
        nix::mount::mount(
            Some("proc"),
            &proc_dir,
            Some("proc"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .expect("mount proc");
        assert_eq!(
            mount_points_below(&path.canonicalize().expect("canonical")).len(),
            1
        );
        drop(root);
        assert!(!path.exists(), "{} was not removed", path.display());
    }
}
