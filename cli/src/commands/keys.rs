//! `tandem keygen`, and reading a signing key back: the private key is an age file
//! encrypted with a passphrase (scrypt), mode 0600; the passphrase comes from the terminal
//! or from a 0600 file, never from an argument or the environment, and is zeroized after use.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use age::secrecy::SecretString;
use anyhow::anyhow;
use gates::keys::{PublicKey, SecretKey};
use zeroize::Zeroizing;

use crate::args::{KeyArgs, KeygenArgs};
use crate::exit::{Failure, FAILURE, OK, USAGE};

pub fn keygen(args: KeygenArgs) -> Result<u8, Failure> {
    let public_path = pub_path(&args.out);
    for path in [&args.out, &public_path] {
        if path.exists() {
            return Err(Failure::usage(format!(
                "{} exists; tandem never overwrites a key: choose another --out, or move the old key away first",
                path.display()
            )));
        }
    }
    let passphrase = match &args.passphrase_file {
        Some(file) => passphrase_from_file(file)?,
        None => passphrase_from_terminal(&args.out, true)?,
    };
    let key = SecretKey::generate();
    let sealed = key
        .encrypt(&passphrase, args.kdf_work_factor)
        .map_err(|e| Failure::new(USAGE, anyhow!("{e}")))?;
    write_new(&args.out, &sealed, 0o600)?;
    let line = key.public().to_line(args.comment.as_deref());
    write_new(&public_path, format!("{line}\n").as_bytes(), 0o644)?;
    eprintln!(
        "wrote {} (private, encrypted, mode 0600) and {} (public)\nkey id {}: put this line in the policy's `keys` for its owner:\n{line}",
        args.out.display(),
        public_path.display(),
        key.public().id()
    );
    Ok(OK)
}

/// Decrypt the key `args` names, asking for (or reading) its passphrase.
pub fn load(args: &KeyArgs) -> Result<SecretKey, Failure> {
    load_key(&args.key, args.passphrase_file.as_deref())
}

pub fn load_key(path: &Path, passphrase_file: Option<&Path>) -> Result<SecretKey, Failure> {
    let meta = fs::metadata(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read the key {} ({e}); give the private key `tandem keygen --out` wrote",
            path.display()
        ))
    })?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Failure::usage(format!(
            "the key {} can be read by other users (mode {:o}); run `chmod 600 {}` and try again",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        )));
    }
    let sealed = fs::read(path)
        .map_err(|e| Failure::usage(format!("cannot read the key {} ({e})", path.display())))?;
    let passphrase = match passphrase_file {
        Some(file) => passphrase_from_file(file)?,
        None => passphrase_from_terminal(path, false)?,
    };
    SecretKey::decrypt(&sealed, &passphrase)
        .map_err(|e| Failure::new(USAGE, anyhow!("{}: {e}", path.display())))
}

/// Read a public key file (`PATH.pub`, or a key line).
pub fn load_public(path: &Path) -> Result<PublicKey, Failure> {
    let text = fs::read_to_string(path).map_err(|e| {
        Failure::usage(format!(
            "cannot read the public key {} ({e}); give the PATH.pub file `tandem keygen` wrote",
            path.display()
        ))
    })?;
    PublicKey::parse(text.lines().next().unwrap_or(""))
        .map_err(|e| Failure::usage(format!("{}: {e}", path.display())))
}

fn pub_path(out: &Path) -> PathBuf {
    let mut p = out.as_os_str().to_owned();
    p.push(".pub");
    PathBuf::from(p)
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), Failure> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Failure::usage(format!("cannot create {} ({e})", path.display())))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| Failure::new(FAILURE, anyhow!("cannot write {} ({e})", path.display())))
}

/// The first line of a passphrase file, which only its owner may read.
fn passphrase_from_file(path: &Path) -> Result<SecretString, Failure> {
    secret_from_file(path, "the passphrase file")
}

/// The first line of `path` (`what`, for messages), which only its owner may read.
pub fn secret_from_file(path: &Path, what: &str) -> Result<SecretString, Failure> {
    let meta = fs::metadata(path)
        .map_err(|e| Failure::usage(format!("cannot read {what} {} ({e})", path.display())))?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(Failure::usage(format!(
            "{what} {} can be read by other users (mode {:o}); run `chmod 600 {}` and try again",
            path.display(),
            meta.permissions().mode() & 0o777,
            path.display()
        )));
    }
    let text = Zeroizing::new(
        fs::read_to_string(path)
            .map_err(|e| Failure::usage(format!("cannot read {what} {} ({e})", path.display())))?,
    );
    let line = text.lines().next().unwrap_or("");
    if line.is_empty() {
        return Err(Failure::usage(format!(
            "{what} {} is empty; write the secret on its first line",
            path.display()
        )));
    }
    Ok(SecretString::from(line.to_string()))
}

fn passphrase_from_terminal(key: &Path, confirm: bool) -> Result<SecretString, Failure> {
    secret_from_terminal(&format!("the passphrase of {}", key.display()), confirm)
}

/// Ask for `what` on the terminal (twice with `confirm`).
pub fn secret_from_terminal(what: &str, confirm: bool) -> Result<SecretString, Failure> {
    let no_terminal = |e: std::io::Error| {
        Failure::usage(format!(
            "cannot ask for {what} ({e}): there is no terminal; give it in a file (mode 0600) with the command's file option"
        ))
    };
    let first =
        Zeroizing::new(rpassword::prompt_password(format!("{what}: ")).map_err(no_terminal)?);
    if first.is_empty() {
        return Err(Failure::usage(format!(
            "an empty value for {what} is refused"
        )));
    }
    if confirm {
        let again =
            Zeroizing::new(rpassword::prompt_password("the same again: ").map_err(no_terminal)?);
        if *again != *first {
            return Err(Failure::usage("the two differ; nothing was written"));
        }
    }
    Ok(SecretString::from(first.to_string()))
}
