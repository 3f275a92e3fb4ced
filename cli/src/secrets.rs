//! tandem's own database password: where it comes from, and how it is rotated.
//!
//! Sources, in order: a `password_command` in tandem's config file (run without a shell; the
//! first line of its output is the password, used once and zeroized: the hook for Vault, a
//! cloud secret manager or `pass`), else a `password_file` sealed with age to an X25519
//! identity (`tandem secrets seal`), else the libpq password file (`~/.pgpass` or
//! `PGPASSFILE`, mode 0600). Never an argument or an environment variable
//! ([`crate::connect`] refuses those).
//!
//! The config file is `$TANDEM_CONFIG`, else `~/.config/tandem/config.toml`:
//!
//! ```toml
//! [connection]
//! password_command = ["vault", "kv", "get", "-field=password", "secret/db/tandem"]
//! # for `tandem secrets rotate`: receives the new password on its standard input
//! password_store_command = ["vault", "kv", "put", "secret/db/tandem", "password=-"]
//! # or: the password sealed with age (`tandem secrets seal`), opened with this identity
//! password_file = "/etc/tandem/db-password.age"
//! identity_file = "/etc/tandem/identity.txt"      # mode 0600
//! ```

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::exit::Failure;

/// How long a password command may take.
const COMMAND_LIMIT: Duration = Duration::from_secs(30);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub connection: Connection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Connection {
    /// Program and arguments printing tandem's password on its first line.
    pub password_command: Option<Vec<String>>,
    /// Program and arguments storing a new password read from standard input (rotation).
    pub password_store_command: Option<Vec<String>>,
    /// The password, sealed with age to `identity_file`'s key.
    pub password_file: Option<PathBuf>,
    /// An age X25519 identity (`AGE-SECRET-KEY-1…`), readable by its owner only.
    pub identity_file: Option<PathBuf>,
}

impl Connection {
    /// The sealed password file and its identity, when both are set (one alone is an error).
    pub fn sealed(&self) -> Result<Option<(PathBuf, PathBuf)>, Failure> {
        match (&self.password_file, &self.identity_file) {
            (Some(f), Some(i)) => Ok(Some((f.clone(), i.clone()))),
            (None, None) => Ok(None),
            _ => Err(Failure::usage(
                "tandem's config sets one of password_file and identity_file: give both (the sealed password and the age identity that opens it)",
            )),
        }
    }
}

/// The config file's path: `$TANDEM_CONFIG`, else `~/.config/tandem/config.toml`.
pub fn config_path() -> Option<PathBuf> {
    std::env::var_os("TANDEM_CONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config/tandem/config.toml"))
        })
}

/// The settings, or the defaults when there is no config file. A file others can write is
/// refused: whoever can edit it chooses the program that hands over the password.
pub fn settings() -> Result<Settings, Failure> {
    let Some(path) = config_path() else {
        return Ok(Settings::default());
    };
    let Ok(meta) = std::fs::metadata(&path) else {
        if std::env::var_os("TANDEM_CONFIG").is_some() {
            return Err(Failure::usage(format!(
                "TANDEM_CONFIG names {}, which cannot be read; fix the path or unset TANDEM_CONFIG",
                path.display()
            )));
        }
        return Ok(Settings::default());
    };
    if meta.permissions().mode() & 0o022 != 0 {
        return Err(Failure::usage(format!(
            "tandem's config {} can be changed by other users (mode {:o}), and it names the program that gives tandem its password; run `chmod go-w {}`",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        )));
    }
    let text = std::fs::read_to_string(&path).map_err(|e| {
        Failure::usage(format!(
            "cannot read tandem's config {} ({e})",
            path.display()
        ))
    })?;
    let settings: Settings = toml::from_str(&text)
        .map_err(|e| Failure::usage(format!("tandem's config {}: {e}", path.display())))?;
    for (what, cmd) in [
        ("password_command", &settings.connection.password_command),
        (
            "password_store_command",
            &settings.connection.password_store_command,
        ),
    ] {
        if matches!(cmd, Some(argv) if argv.is_empty() || argv[0].is_empty()) {
            return Err(Failure::usage(format!(
                "{}: {what} is empty; give the program and its arguments, e.g. [\"pass\", \"show\", \"db/tandem\"]",
                path.display()
            )));
        }
    }
    Ok(settings)
}

/// Run `argv` (no shell), feeding `input` on its standard input; its standard output.
/// Fails naming the program and its exit status, never its output.
fn run(argv: &[String], input: Option<&[u8]>, what: &str) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| {
            Failure::usage(format!(
                "cannot run {what} `{}` ({e}); check the program in tandem's config",
                argv[0]
            ))
        })?;
    if let (Some(input), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(input)
            .map_err(|e| Failure::usage(format!("cannot write to {what} `{}` ({e})", argv[0])))?;
    }
    let mut out = Zeroizing::new(Vec::new());
    if let Some(mut stdout) = child.stdout.take() {
        stdout
            .read_to_end(&mut out)
            .map_err(|e| Failure::usage(format!("cannot read {what} `{}` ({e})", argv[0])))?;
    }
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child
            .try_wait()
            .map_err(|e| Failure::usage(format!("{what}: {e}")))?
        {
            break status;
        }
        if started.elapsed() > COMMAND_LIMIT {
            let _ = child.kill();
            return Err(Failure::usage(format!(
                "{what} `{}` did not finish within {} s; check it runs without asking anything",
                argv[0],
                COMMAND_LIMIT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    if !status.success() {
        return Err(Failure::usage(format!(
            "{what} `{}` failed ({status}); run it yourself to see why (its output is never shown by tandem)",
            argv[0]
        )));
    }
    Ok(out)
}

/// The password `password_command` prints (its first line).
pub fn from_command(argv: &[String]) -> Result<Zeroizing<String>, Failure> {
    let out = run(argv, None, "password_command")?;
    let text = std::str::from_utf8(&out).map_err(|_| {
        Failure::usage(format!(
            "password_command `{}` printed something that is not UTF-8",
            argv[0]
        ))
    })?;
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(Failure::usage(format!(
            "password_command `{}` printed no password on its first line",
            argv[0]
        )));
    }
    Ok(Zeroizing::new(line.to_string()))
}

/// Hand a new password to `password_store_command` (on its standard input, with a newline).
pub fn store_with_command(argv: &[String], password: &str) -> Result<(), Failure> {
    let input = Zeroizing::new(format!("{password}\n").into_bytes());
    run(argv, Some(&input), "password_store_command").map(|_| ())
}

/// Replace the password of the pgpass line that matched (`line`, 0-based) with `password`,
/// in a new file beside it (mode 0600); returns the new file, to be renamed over the old one
/// once the server accepts the password.
pub fn pgpass_replaced(path: &Path, line: usize, password: &str) -> Result<PathBuf, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let text = Zeroizing::new(
        std::fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read {} ({e})", path.display())))?,
    );
    let mut out = Zeroizing::new(String::with_capacity(text.len() + 64));
    for (i, l) in text.lines().enumerate() {
        if i == line {
            let fields = crate::connect::split_pgpass(l);
            let keep: Vec<String> = fields[..4].iter().map(|f| escape(f)).collect();
            out.push_str(&keep.join(":"));
            out.push(':');
            out.push_str(&escape(password));
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    let pending = path.with_extension("tandem-new");
    let _ = std::fs::remove_file(&pending);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&pending)
        .map_err(|e| Failure::usage(format!("cannot write {} ({e})", pending.display())))?;
    f.write_all(out.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Failure::usage(format!("cannot write {} ({e})", pending.display())))?;
    Ok(pending)
}

fn escape(field: &str) -> String {
    if field == "*" {
        return field.to_string();
    }
    field.replace('\\', "\\\\").replace(':', "\\:")
}

/// The age identity in `path` (its first line that is not a comment); the file must be
/// readable by its owner only.
fn identity(path: &Path) -> Result<age::x25519::Identity, Failure> {
    owner_only(path, "the age identity")?;
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read the age identity {} ({e})",
            path.display()
        ))
    })?);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .unwrap_or("");
    line.parse().map_err(|e| {
        Failure::usage(format!(
            "{} is not an age X25519 identity ({e}); make one with `tandem secrets seal --identity FILE`",
            path.display()
        ))
    })
}

fn owner_only(path: &Path, what: &str) -> Result<(), Failure> {
    let meta = std::fs::metadata(path)
        .map_err(|e| Failure::usage(format!("cannot read {what} {} ({e})", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Failure::usage(format!(
            "{what} {} can be read by other users (mode {:o}); run `chmod 600 {}`",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        )));
    }
    Ok(())
}

/// The password sealed in `file`, opened with the identity in `identity_file`.
pub fn from_sealed(file: &Path, identity_file: &Path) -> Result<Zeroizing<String>, Failure> {
    let key = identity(identity_file)?;
    owner_only(file, "the sealed password file")?;
    let sealed = std::fs::read(file).map_err(|e| {
        Failure::usage(format!(
            "cannot read the sealed password {} ({e})",
            file.display()
        ))
    })?;
    let plain = Zeroizing::new(age::decrypt(&key, &sealed).map_err(|e| {
        Failure::usage(format!(
            "cannot open the sealed password {} with the identity {} ({e}); seal it again with `tandem secrets seal`",
            file.display(),
            identity_file.display()
        ))
    })?);
    let text = std::str::from_utf8(&plain).map_err(|_| {
        Failure::usage(format!(
            "{}: the sealed password is not UTF-8",
            file.display()
        ))
    })?;
    Ok(Zeroizing::new(text.trim_end_matches('\n').to_string()))
}

/// Seal `password` to the identity in `identity_file` (made, mode 0600, when missing) into a
/// new file beside `file` (mode 0600); returns that file, to be renamed over `file`.
pub fn seal(file: &Path, identity_file: &Path, password: &str) -> Result<PathBuf, Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    if !identity_file.exists() {
        use age::secrecy::ExposeSecret;
        let made = age::x25519::Identity::generate();
        let text = Zeroizing::new(format!(
            "# age identity made by tandem secrets seal; public key: {}\n{}\n",
            made.to_public(),
            made.to_string().expose_secret()
        ));
        write_new(identity_file, text.as_bytes())?;
    }
    let key = identity(identity_file)?;
    let sealed = age::encrypt(&key.to_public(), password.as_bytes())
        .map_err(|e| Failure::usage(format!("cannot seal the password ({e})")))?;
    let pending = file.with_extension("tandem-new");
    let _ = std::fs::remove_file(&pending);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&pending)
        .map_err(|e| Failure::usage(format!("cannot write {} ({e})", pending.display())))?;
    f.write_all(&sealed)
        .and_then(|()| f.sync_all())
        .map_err(|e| Failure::usage(format!("cannot write {} ({e})", pending.display())))?;
    Ok(pending)
}

fn write_new(path: &Path, bytes: &[u8]) -> Result<(), Failure> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| Failure::usage(format!("cannot create {} ({e})", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Failure::usage(format!("cannot write {} ({e})", path.display())))
}
