//! Private keys from PEM: PKCS#8, PKCS#1 (RSA) and SEC1 (EC), in the clear or encrypted with
//! `--ssl-keyfile-password` (PKCS#8 PBES2, or OpenSSL's legacy `DEK-Info` encryption).

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, KeyIvInit};
use md5::{Digest, Md5};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer};

use super::pem::PemBlock;
use super::TlsError;

/// The first private key among `blocks`, decrypted with `password` if it is encrypted.
pub fn private_key(
    blocks: &[PemBlock],
    password: Option<&str>,
    path: &str,
) -> Result<Option<PrivateKeyDer<'static>>, TlsError> {
    for block in blocks {
        let key = match block.label.as_str() {
            "PRIVATE KEY" => PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(block.der.clone())),
            "ENCRYPTED PRIVATE KEY" => {
                let password = password.ok_or_else(|| TlsError::PasswordNeeded(path.to_owned()))?;
                let info = pkcs8::EncryptedPrivateKeyInfo::try_from(block.der.as_slice())
                    .map_err(|err| TlsError::BadKey(path.to_owned(), err.to_string()))?;
                let document = info
                    .decrypt(password)
                    .map_err(|_| TlsError::WrongPassword(path.to_owned()))?;
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(document.as_bytes().to_vec()))
            }
            "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {
                let der = match block.header("DEK-Info") {
                    None => block.der.clone(),
                    Some(dek_info) => {
                        let password =
                            password.ok_or_else(|| TlsError::PasswordNeeded(path.to_owned()))?;
                        decrypt_legacy(&block.der, dek_info, password, path)?
                    }
                };
                if block.label == "RSA PRIVATE KEY" {
                    PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der))
                } else {
                    PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der))
                }
            }
            _ => continue,
        };
        return Ok(Some(key));
    }
    Ok(None)
}

/// OpenSSL's pre-PKCS#8 key encryption: key = EVP_BytesToKey(MD5, password, salt = IV[..8]),
/// then CBC with PKCS#7 padding.
fn decrypt_legacy(
    der: &[u8],
    dek_info: &str,
    password: &str,
    path: &str,
) -> Result<Vec<u8>, TlsError> {
    let unsupported = || {
        TlsError::BadKey(
            path.to_owned(),
            format!("unsupported key encryption '{dek_info}'"),
        )
    };
    let (cipher, iv_hex) = dek_info.split_once(',').ok_or_else(unsupported)?;
    let iv = decode_hex(iv_hex.trim()).ok_or_else(unsupported)?;
    if iv.len() < 8 {
        return Err(unsupported());
    }
    let wrong_password = || TlsError::WrongPassword(path.to_owned());
    let mut buffer = der.to_vec();
    let salt = &iv[..8];
    let plain_len = match cipher.trim().to_ascii_uppercase().as_str() {
        "AES-128-CBC" => decrypt_cbc::<aes::Aes128>(password, salt, &iv, &mut buffer),
        "AES-192-CBC" => decrypt_cbc::<aes::Aes192>(password, salt, &iv, &mut buffer),
        "AES-256-CBC" => decrypt_cbc::<aes::Aes256>(password, salt, &iv, &mut buffer),
        "DES-EDE3-CBC" => decrypt_cbc::<des::TdesEde3>(password, salt, &iv, &mut buffer),
        _ => return Err(unsupported()),
    }
    .map_err(|failure| match failure {
        CbcFailure::BadIv => unsupported(),
        CbcFailure::BadPadding => wrong_password(),
    })?;
    buffer.truncate(plain_len);
    // A wrong password usually fails the padding check; when it does not, the result is not DER.
    if buffer.first() != Some(&0x30) {
        return Err(wrong_password());
    }
    Ok(buffer)
}

/// Why an OpenSSL legacy (`DEK-Info`) decryption failed.
enum CbcFailure {
    /// The IV does not fit the cipher: the file is not what it claims.
    BadIv,
    /// The padding is wrong: almost always a wrong password.
    BadPadding,
}

/// Decrypts `buffer` in place with cipher `C` in CBC mode, the key derived from `password` as
/// OpenSSL's `EVP_BytesToKey` does; returns the plaintext length.
fn decrypt_cbc<C>(
    password: &str,
    salt: &[u8],
    iv: &[u8],
    buffer: &mut [u8],
) -> Result<usize, CbcFailure>
where
    C: aes::cipher::BlockCipher + aes::cipher::BlockDecryptMut + aes::cipher::KeyInit,
{
    let key = bytes_to_key(password, salt, C::key_size());
    cbc::Decryptor::<C>::new_from_slices(&key, iv)
        .map_err(|_| CbcFailure::BadIv)?
        .decrypt_padded_mut::<Pkcs7>(buffer)
        .map(|plain| plain.len())
        .map_err(|_| CbcFailure::BadPadding)
}

/// EVP_BytesToKey with MD5 and one iteration, as OpenSSL's PEM encryption uses it.
fn bytes_to_key(password: &str, salt: &[u8], len: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(len + 16);
    let mut previous: Option<[u8; 16]> = None;
    while key.len() < len {
        let mut hasher = Md5::new();
        if let Some(previous) = previous {
            hasher.update(previous);
        }
        hasher.update(password.as_bytes());
        hasher.update(salt);
        let digest: [u8; 16] = hasher.finalize().into();
        key.extend_from_slice(&digest);
        previous = Some(digest);
    }
    key.truncate(len);
    key
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{bytes_to_key, decode_hex};

    #[test]
    fn evp_bytes_to_key_matches_openssl() {
        // `openssl enc -aes-256-cbc -P -md md5 -pass pass:secret -S 0102030405060708`
        let key = bytes_to_key("secret", &[1, 2, 3, 4, 5, 6, 7, 8], 32);
        assert_eq!(key.len(), 32);
        // First block is MD5(password || salt).
        let first: [u8; 16] = {
            use md5::Digest;
            let mut h = md5::Md5::new();
            h.update(b"secret");
            h.update([1u8, 2, 3, 4, 5, 6, 7, 8]);
            h.finalize().into()
        };
        assert_eq!(&key[..16], &first);
    }

    #[test]
    fn hex() {
        assert_eq!(decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(decode_hex("0"), None);
        assert_eq!(decode_hex("zz"), None);
    }
}
