//! `rsvp-server token create|list|revoke`: API tokens, made and revoked in
//! the store every server reads them from.

use std::io::Write;

use abi::{NewToken, TokenId, UserId};
use anyhow::Context;
use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use reservation::Rsvp;

use crate::cli::TokenCommand;

/// Runs one token command against `store`, writing what it shows to `out`.
///
/// # Errors
/// A bad principal, duration or id, or a store that cannot be reached.
pub async fn run(
    command: TokenCommand,
    store: &dyn Rsvp,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            principal,
            role,
            expires,
        } => {
            let principal = UserId::parse(principal).context("--principal")?;
            let expires_at = expires
                .map(|lifetime| {
                    TimeDelta::from_std(lifetime)
                        .ok()
                        .and_then(|d| Utc::now().checked_add_signed(d))
                        .context("--expires is too far in the future")
                })
                .transpose()?;
            let (token, secret) = store
                .create_token(NewToken {
                    principal,
                    role,
                    expires_at,
                })
                .await
                .context("making the token")?;
            writeln!(out, "{}", secret.expose())?;
            eprintln!(
                "token {} for {} ({}), {}: shown once, keep it secret",
                token.id,
                token.principal,
                token.role,
                match token.expires_at {
                    Some(at) => format!("expires {}", time(at)),
                    None => "does not expire".to_string(),
                }
            );
        }
        TokenCommand::List => {
            let tokens = store.tokens().await.context("reading tokens")?;
            let mut rows =
                vec![["ID", "PRINCIPAL", "ROLE", "MADE", "EXPIRES", "REVOKED"].map(String::from)];
            rows.extend(tokens.into_iter().map(|t| {
                [
                    t.id.to_string(),
                    t.principal.to_string(),
                    t.role.to_string(),
                    time(t.created_at),
                    t.expires_at.map(time).unwrap_or_else(|| "-".into()),
                    t.revoked_at.map(time).unwrap_or_else(|| "-".into()),
                ]
            }));
            // Each column as wide as its widest cell, two spaces between.
            let mut widths = [0; 6];
            for row in &rows {
                for (w, cell) in widths.iter_mut().zip(row) {
                    *w = (*w).max(cell.chars().count());
                }
            }
            for row in rows {
                let mut line = String::new();
                for (cell, w) in row.iter().zip(widths) {
                    line.push_str(&format!("{cell:<w$}  "));
                }
                writeln!(out, "{}", line.trim_end())?;
            }
        }
        TokenCommand::Revoke { id } => {
            let id = TokenId::parse(&id).map_err(|e| anyhow::anyhow!("token id {id:?}: {e}"))?;
            let token = store.revoke_token(id).await.context("revoking the token")?;
            writeln!(
                out,
                "revoked token {} of {} at {}",
                token.id,
                token.principal,
                token.revoked_at.map(time).unwrap_or_default()
            )?;
        }
    }
    Ok(())
}

fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, true)
}
