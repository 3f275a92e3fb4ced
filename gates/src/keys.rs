//! Ed25519 signing keys: the private key file (age, passphrase-encrypted), the public key line
//! people paste into the policy, and signatures.

use std::fmt;
use std::io::{Read, Write};
use std::iter;

use age::secrecy::{ExposeSecret, SecretString};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use crate::canonical::sha256_hex;

/// The first word of a public key line.
pub const PUBLIC_PREFIX: &str = "tandem-ed25519";
/// The first word of the plaintext inside a private key file.
const SECRET_PREFIX: &str = "tandem-ed25519-secret-v1";
/// The lowest scrypt work factor (log2 N) a key file may be written with.
pub const MIN_WORK_FACTOR: u8 = 10;

/// What went wrong with a key, a key file or a signature, and how to recover.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "wrong passphrase, or the file is not a tandem key encrypted with a passphrase; \
         check the passphrase, or make a new key with `tandem keygen`"
    )]
    Passphrase,
    #[error(
        "damaged or foreign key file: {0}; use the file `tandem keygen` wrote, restore it from \
         a backup, or make a new key with `tandem keygen`"
    )]
    Malformed(String),
    #[error(
        "the key file asks for scrypt work factor {required}, far above what this machine \
         decrypts in a few seconds (about {target}); decrypt it on a faster machine, or make a \
         new key with `tandem keygen`"
    )]
    ExcessiveWork { required: u8, target: u8 },
    #[error(
        "scrypt work factor {0} is too weak to protect a key; use at least {MIN_WORK_FACTOR}, \
         or leave it out to calibrate on this machine"
    )]
    WeakWorkFactor(u8),
    #[error(
        "scrypt work factor {0} is out of range; use a value from {MIN_WORK_FACTOR} to 30, or \
         leave it out to calibrate on this machine"
    )]
    WorkFactorRange(u8),
    #[error("could not encrypt the key: {0}; try again, or report it as a bug")]
    Encrypt(String),
    #[error(
        "not a tandem public key: {0}; a public key line reads `{PUBLIC_PREFIX} <base64> \
         [comment]`, as `tandem keygen` prints it"
    )]
    PublicKey(String),
    #[error(
        "not a signature: {0}; a signature is 64 bytes in standard base64, as tandem writes it: \
         sign the statement again"
    )]
    Signature(String),
}

/// A private signing key. Zeroized on drop; its `Debug` shows only the key id.
pub struct SecretKey(SigningKey);

impl SecretKey {
    /// A new random key from the operating system's generator.
    pub fn generate() -> SecretKey {
        SecretKey(SigningKey::generate(&mut OsRng))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, msg: &[u8]) -> Signature {
        Signature(self.0.sign(msg))
    }

    /// The key file's bytes: the seed in an ASCII-armored age file encrypted to `passphrase`
    /// with scrypt. `work_factor` is scrypt's log2 N; `None` lets age calibrate to about one
    /// second on this machine.
    pub fn encrypt(
        &self,
        passphrase: &SecretString,
        work_factor: Option<u8>,
    ) -> Result<Vec<u8>, KeyError> {
        let mut recipient =
            age::scrypt::Recipient::new(SecretString::from(passphrase.expose_secret().to_owned()));
        if let Some(wf) = work_factor {
            if wf < MIN_WORK_FACTOR {
                return Err(KeyError::WeakWorkFactor(wf));
            }
            if wf > 30 {
                return Err(KeyError::WorkFactorRange(wf));
            }
            recipient.set_work_factor(wf);
        }
        let seed = Zeroizing::new(self.0.to_bytes());
        let encoded = Zeroizing::new(BASE64.encode(&seed[..]));
        let plaintext = Zeroizing::new(format!("{SECRET_PREFIX} {}\n", encoded.as_str()));

        let encrypt_err = |e: &dyn fmt::Display| KeyError::Encrypt(e.to_string());
        let encryptor =
            age::Encryptor::with_recipients(iter::once(&recipient as &dyn age::Recipient))
                .map_err(|e| encrypt_err(&e))?;
        let mut out = Vec::new();
        let armor =
            age::armor::ArmoredWriter::wrap_output(&mut out, age::armor::Format::AsciiArmor)
                .map_err(|e| encrypt_err(&e))?;
        let mut writer = encryptor.wrap_output(armor).map_err(|e| encrypt_err(&e))?;
        writer
            .write_all(plaintext.as_bytes())
            .map_err(|e| encrypt_err(&e))?;
        writer
            .finish()
            .and_then(|armor| armor.finish())
            .map_err(|e| encrypt_err(&e))?;
        Ok(out)
    }

    /// Reads a key file written by [`SecretKey::encrypt`] (armored or binary age).
    pub fn decrypt(file_bytes: &[u8], passphrase: &SecretString) -> Result<SecretKey, KeyError> {
        use age::DecryptError as D;
        let map = |e: D| match e {
            D::DecryptionFailed | D::KeyDecryptionFailed | D::InvalidMac => KeyError::Passphrase,
            D::ExcessiveWork { required, target } => KeyError::ExcessiveWork { required, target },
            D::NoMatchingKeys => {
                KeyError::Malformed("it is an age file, but not encrypted with a passphrase".into())
            }
            D::UnknownFormat => KeyError::Malformed("an age file of an unknown version".into()),
            D::InvalidHeader => KeyError::Malformed("not an age file (bad header)".into()),
            other => KeyError::Malformed(other.to_string()),
        };
        let reader = age::armor::ArmoredReader::new(file_bytes);
        let decryptor = age::Decryptor::new(reader).map_err(map)?;
        if !decryptor.is_scrypt() {
            return Err(KeyError::Malformed(
                "it is an age file, but not encrypted with a passphrase".into(),
            ));
        }
        let identity =
            age::scrypt::Identity::new(SecretString::from(passphrase.expose_secret().to_owned()));
        let mut reader = decryptor
            .decrypt(iter::once(&identity as &dyn age::Identity))
            .map_err(map)?;
        let mut plaintext = Zeroizing::new(Vec::new());
        reader.read_to_end(&mut plaintext).map_err(|e| {
            KeyError::Malformed(format!("the encrypted contents are damaged ({e})"))
        })?;
        Self::from_plaintext(&plaintext)
    }

    fn from_plaintext(plaintext: &[u8]) -> Result<SecretKey, KeyError> {
        let bad =
            || KeyError::Malformed(format!("the decrypted text is not a `{SECRET_PREFIX}` key"));
        let text = std::str::from_utf8(plaintext).map_err(|_| bad())?;
        let (prefix, encoded) = text.trim_end().split_once(' ').ok_or_else(bad)?;
        if prefix != SECRET_PREFIX {
            return Err(bad());
        }
        let bytes = Zeroizing::new(BASE64.decode(encoded.trim()).map_err(|_| bad())?);
        let mut seed = Zeroizing::new([0u8; 32]);
        if bytes.len() != seed.len() {
            return Err(bad());
        }
        seed.copy_from_slice(&bytes);
        Ok(SecretKey(SigningKey::from_bytes(&seed)))
    }
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.public().id())
    }
}

/// A public key; its text form is the line `tandem-ed25519 <base64> [comment]`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses a public key line; the comment after the key, if any, is ignored.
    pub fn parse(line: &str) -> Result<PublicKey, KeyError> {
        let mut words = line.split_whitespace();
        let prefix = words
            .next()
            .ok_or_else(|| KeyError::PublicKey("an empty line".into()))?;
        if prefix != PUBLIC_PREFIX {
            return Err(KeyError::PublicKey(format!(
                "it starts with `{}`, not `{PUBLIC_PREFIX}`",
                truncate(prefix, 40)
            )));
        }
        let encoded = words
            .next()
            .ok_or_else(|| KeyError::PublicKey("the key is missing after the prefix".into()))?;
        let bytes = BASE64
            .decode(encoded)
            .map_err(|e| KeyError::PublicKey(format!("the key is not standard base64 ({e})")))?;
        let bytes: [u8; 32] = bytes.as_slice().try_into().map_err(|_| {
            KeyError::PublicKey(format!("the key is {} bytes, not 32", bytes.len()))
        })?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| KeyError::PublicKey("the key is not a valid Ed25519 point".into()))?;
        if key.is_weak() {
            return Err(KeyError::PublicKey(
                "the key is a weak (small-order) Ed25519 point".into(),
            ));
        }
        Ok(PublicKey(key))
    }

    /// The one-line text form, with an optional comment (such as `alice@laptop`) after it.
    pub fn to_line(&self, comment: Option<&str>) -> String {
        let mut line = format!("{PUBLIC_PREFIX} {}", BASE64.encode(self.0.as_bytes()));
        if let Some(c) = comment.map(str::trim).filter(|c| !c.is_empty()) {
            line.push(' ');
            line.push_str(c);
        }
        line
    }

    /// `ed25519:` and the first 16 hex digits of the SHA-256 of the key's 32 bytes.
    pub fn id(&self) -> String {
        let mut digest = sha256_hex(self.0.as_bytes());
        digest.truncate(16);
        format!("ed25519:{digest}")
    }

    /// True when `sig` is this key's signature of `msg` (strict: no malleable signatures).
    pub fn verify(&self, msg: &[u8], sig: &Signature) -> bool {
        self.0.verify_strict(msg, &sig.0).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_line(None))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_line(None))
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let line = String::deserialize(d)?;
        PublicKey::parse(&line).map_err(serde::de::Error::custom)
    }
}

/// An Ed25519 signature; its text form is standard base64.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Signature(ed25519_dalek::Signature);

impl Signature {
    pub fn parse(text: &str) -> Result<Signature, KeyError> {
        let bytes = BASE64
            .decode(text.trim())
            .map_err(|e| KeyError::Signature(format!("not standard base64 ({e})")))?;
        let bytes: [u8; 64] = bytes
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::Signature(format!("{} bytes, not 64", bytes.len())))?;
        Ok(Signature(ed25519_dalek::Signature::from_bytes(&bytes)))
    }

    pub fn to_base64(&self) -> String {
        BASE64.encode(self.0.to_bytes())
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({})", self.to_base64())
    }
}

impl Serialize for Signature {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for Signature {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Signature::parse(&text).map_err(serde::de::Error::custom)
    }
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pass(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    #[test]
    fn key_file_round_trips_and_refuses_a_wrong_passphrase() {
        let key = SecretKey::generate();
        let file = key.encrypt(&pass("correct horse"), Some(10)).unwrap();
        let text = std::str::from_utf8(&file).unwrap();
        assert!(
            text.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"),
            "{text}"
        );
        assert!(!text.contains(&BASE64.encode(key.0.to_bytes())));

        let back = SecretKey::decrypt(&file, &pass("correct horse")).unwrap();
        assert_eq!(back.public(), key.public());
        let sig = back.sign(b"hello");
        assert!(key.public().verify(b"hello", &sig));

        let err = SecretKey::decrypt(&file, &pass("wrong horse")).unwrap_err();
        assert!(matches!(err, KeyError::Passphrase), "{err:?}");
        assert!(err.to_string().contains("tandem keygen"), "{err}");
    }

    #[test]
    fn key_file_rejects_weak_work_factors_and_garbage() {
        let key = SecretKey::generate();
        assert!(matches!(
            key.encrypt(&pass("p"), Some(9)),
            Err(KeyError::WeakWorkFactor(9))
        ));
        let err = SecretKey::decrypt(b"not a key file", &pass("p")).unwrap_err();
        assert!(matches!(err, KeyError::Malformed(_)), "{err:?}");
        let mut file = key.encrypt(&pass("p"), Some(10)).unwrap();
        file.truncate(file.len() / 2);
        assert!(SecretKey::decrypt(&file, &pass("p")).is_err());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let key = SecretKey::generate();
        let debug = format!("{key:?}");
        assert_eq!(debug, format!("SecretKey({})", key.public().id()));
    }

    #[test]
    fn public_key_line_round_trips() {
        let key = SecretKey::generate().public();
        let line = key.to_line(Some("alice@laptop"));
        assert!(line.starts_with("tandem-ed25519 ") && line.ends_with(" alice@laptop"));
        assert_eq!(PublicKey::parse(&format!("  {line}\n")).unwrap(), key);
        assert_eq!(PublicKey::parse(&key.to_line(None)).unwrap(), key);
        let id = key.id();
        assert!(id.starts_with("ed25519:") && id.len() == 8 + 16, "{id}");
        let json = serde_json::to_string(&key).unwrap();
        assert_eq!(serde_json::from_str::<PublicKey>(&json).unwrap(), key);
    }

    #[test]
    fn public_key_rejects_garbage() {
        let key = SecretKey::generate().public();
        let b64 = BASE64.encode(key.0.as_bytes());
        for bad in [
            String::new(),
            format!("ssh-ed25519 {b64}"),
            "tandem-ed25519".to_string(),
            "tandem-ed25519 !!!".to_string(),
            format!("tandem-ed25519 {}", BASE64.encode([1u8; 31])),
            // The identity point: small order, so weak.
            format!(
                "tandem-ed25519 {}",
                BASE64.encode({
                    let mut b = [0u8; 32];
                    b[0] = 1;
                    b
                })
            ),
        ] {
            let err = PublicKey::parse(&bad).unwrap_err();
            assert!(matches!(err, KeyError::PublicKey(_)), "{bad}: {err:?}");
        }
    }

    #[test]
    fn signatures_round_trip_and_a_flipped_byte_fails() {
        let key = SecretKey::generate();
        let sig = key.sign(b"msg");
        let back = Signature::parse(&sig.to_base64()).unwrap();
        assert_eq!(back, sig);
        assert!(key.public().verify(b"msg", &back));
        assert!(!key.public().verify(b"msh", &back));
        let mut bytes = sig.0.to_bytes();
        bytes[3] ^= 1;
        let forged = Signature(ed25519_dalek::Signature::from_bytes(&bytes));
        assert!(!key.public().verify(b"msg", &forged));
        assert!(Signature::parse("abc").is_err());
    }
}
