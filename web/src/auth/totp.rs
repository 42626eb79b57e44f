//! The second factor: time-based one-time codes (RFC 6238: SHA-1, 6 digits, 30 s), the seed
//! sealed with the master key, each code accepted once.

use opora_store::Vault;
use qrcode::render::svg;
use qrcode::QrCode;
use sqlx::PgPool;
use totp_rs::{Algorithm, Secret, TOTP};
use uuid::Uuid;

const ISSUER: &str = "Opora";
const STEP: u64 = 30;
/// One step either side is accepted (clocks drift).
const SKEW: u8 = 1;

fn aad(user: Uuid) -> Vec<u8> {
    let mut aad = b"opora:totp:".to_vec();
    aad.extend_from_slice(user.as_bytes());
    aad
}

fn totp(secret: Vec<u8>, login: &str) -> Option<TOTP> {
    TOTP::new(
        Algorithm::SHA1,
        6,
        SKEW,
        STEP,
        secret,
        Some(ISSUER.to_owned()),
        login.to_owned(),
    )
    .ok()
}

/// A fresh 160-bit seed.
pub fn new_secret() -> Option<Vec<u8>> {
    let mut bytes = vec![0u8; 20];
    getrandom::getrandom(&mut bytes).ok()?;
    Some(bytes)
}

/// The seed in base32, for typing into an authenticator by hand.
pub fn secret_base32(secret: &[u8]) -> String {
    Secret::Raw(secret.to_vec()).to_encoded().to_string()
}

/// The otpauth:// address and its QR code as inline SVG.
pub fn enrolment_qr(secret: &[u8], login: &str) -> Option<(String, String)> {
    let url = totp(secret.to_vec(), login)?.get_url();
    let svg = QrCode::new(url.as_bytes())
        .ok()?
        .render::<svg::Color>()
        .min_dimensions(220, 220)
        .dark_color(svg::Color("#000000"))
        .light_color(svg::Color("#ffffff"))
        .build();
    let svg = match svg.find("<svg") {
        Some(start) => svg[start..].to_owned(),
        None => svg,
    };
    Some((url, svg))
}

/// The step a code matches, if it matches `secret` at `unix_time` (± one step).
pub fn matching_step(secret: &[u8], login: &str, code: &str, unix_time: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let totp = totp(secret.to_vec(), login)?;
    let now = unix_time / STEP;
    [now.saturating_sub(1), now, now + 1]
        .into_iter()
        .find(|step| totp.generate(step * STEP) == code)
}

/// The code for `unix_time` (tests and the CLI's diagnostics use it).
pub fn code_at(secret: &[u8], login: &str, unix_time: u64) -> Option<String> {
    Some(totp(secret.to_vec(), login)?.generate(unix_time))
}

/// Stores a confirmed seed for the user, sealed with the master key.
pub async fn store_secret(
    pool: &PgPool,
    vault: &Vault,
    user: Uuid,
    secret: &[u8],
    accepted_step: Option<u64>,
) -> anyhow::Result<()> {
    let sealed = vault.seal_with_master(secret, &aad(user))?;
    let updated = sqlx::query(
        "UPDATE access.credential SET totp_secret = $2, totp_last_step = $3 WHERE user_id = $1",
    )
    .bind(user)
    .bind(sealed)
    .bind(accepted_step.map(|s| s as i64))
    .execute(pool)
    .await?
    .rows_affected();
    anyhow::ensure!(updated == 1, "the user has no credentials");
    Ok(())
}

/// Forgets the user's seed (an administrator's reset): the next login enrols again.
pub async fn clear_secret(pool: &PgPool, user: Uuid) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE access.credential SET totp_secret = NULL, totp_last_step = NULL, \
                session_epoch = session_epoch + 1 WHERE user_id = $1",
    )
    .bind(user)
    .execute(pool)
    .await?;
    Ok(())
}

/// The user's seed, if enrolled.
pub async fn stored_secret(
    pool: &PgPool,
    vault: &Vault,
    user: Uuid,
) -> anyhow::Result<Option<Vec<u8>>> {
    let sealed: Option<Option<Vec<u8>>> =
        sqlx::query_scalar("SELECT totp_secret FROM access.credential WHERE user_id = $1")
            .bind(user)
            .fetch_optional(pool)
            .await?;
    match sealed.flatten() {
        None => Ok(None),
        Some(sealed) => Ok(Some(vault.open_with_master(&sealed, &aad(user))?)),
    }
}

/// Checks a code against the stored seed and consumes its step, so the same code (or an
/// older one) never works twice. Atomic: two racing requests cannot both succeed.
pub async fn verify_and_consume(
    pool: &PgPool,
    vault: &Vault,
    user: Uuid,
    login: &str,
    code: &str,
) -> anyhow::Result<bool> {
    let Some(secret) = stored_secret(pool, vault, user).await? else {
        return Ok(false);
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp().max(0) as u64;
    let Some(step) = matching_step(&secret, login, code, now) else {
        return Ok(false);
    };
    let consumed = sqlx::query(
        "UPDATE access.credential SET totp_last_step = $2 \
          WHERE user_id = $1 AND (totp_last_step IS NULL OR totp_last_step < $2)",
    )
    .bind(user)
    .bind(step as i64)
    .execute(pool)
    .await?
    .rows_affected();
    Ok(consumed == 1)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_within_one_step_only() {
        let secret = new_secret().unwrap();
        let t = 1_800_000_000;
        let code = code_at(&secret, "curator", t).unwrap();
        assert_eq!(matching_step(&secret, "curator", &code, t), Some(t / 30));
        assert!(matching_step(&secret, "curator", &code, t + 30).is_some());
        assert!(matching_step(&secret, "curator", &code, t + 95).is_none());
        assert!(matching_step(&secret, "curator", "12345", t).is_none());
    }

    #[test]
    fn the_qr_code_is_svg() {
        let (url, svg) = enrolment_qr(&new_secret().unwrap(), "curator").unwrap();
        assert!(url.starts_with("otpauth://totp/Opora:curator?"), "{url}");
        assert!(svg.starts_with("<svg"), "{svg}");
    }
}
