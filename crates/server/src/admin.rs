//! The admin CLI: `tessera sessions list|revoke`, `tessera purge`, against the same store the
//! service uses.

use std::time::Duration;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use tessera_core::{Key, Sessions};

use crate::store_url::StoreUrl;
use crate::view::rfc3339;

async fn open(store: &StoreUrl) -> anyhow::Result<Sessions> {
    let opened = store.open().await?;
    opened
        .ping()
        .await
        .with_context(|| format!("the store {store} does not answer"))?;
    Ok(Sessions::from_arc(opened))
}

/// `tessera sessions list --subject S`: one line per live session, oldest first.
///
/// # Errors
///
/// The store is unreachable or cannot list by subject.
pub(crate) async fn list(store: &StoreUrl, subject: &str) -> anyhow::Result<()> {
    let sessions = open(store).await?;
    let records = sessions
        .list_subject(subject)
        .await
        .with_context(|| format!("cannot list the sessions of {subject:?}"))?;
    if records.is_empty() {
        println!("no live sessions for {subject:?}");
        return Ok(());
    }
    println!(
        "{:<43}  {:<24}  {:<24}  {:<24}  {:<15}  USER AGENT",
        "HANDLE", "CREATED", "LAST SEEN", "EXPIRES", "IP"
    );
    for record in &records {
        println!(
            "{:<43}  {:<24}  {:<24}  {:<24}  {:<15}  {}",
            record.key.handle(),
            rfc3339(record.created_at),
            rfc3339(record.last_seen_at),
            rfc3339(record.deadline()),
            record.client.ip.as_deref().unwrap_or("-"),
            record.client.user_agent.as_deref().unwrap_or("-"),
        );
    }
    println!("{} live session(s) for {subject:?}", records.len());
    Ok(())
}

/// `tessera sessions revoke --subject S | --handle H`.
///
/// # Errors
///
/// A malformed handle, an unknown handle, or a store failure.
pub(crate) async fn revoke(
    store: &StoreUrl,
    subject: Option<&str>,
    handle: Option<&str>,
) -> anyhow::Result<()> {
    let sessions = open(store).await?;
    match (subject, handle) {
        (Some(subject), None) => {
            let n = sessions
                .revoke_subject(subject, None)
                .await
                .with_context(|| format!("cannot revoke the sessions of {subject:?}"))?;
            println!("revoked {n} session(s) of {subject:?}");
        }
        (None, Some(handle)) => {
            let Some(key) = Key::from_handle(handle.trim()) else {
                bail!("malformed session handle {:?}", short(handle));
            };
            if sessions.record(&key).await?.is_none() {
                bail!("no live session with handle {}…", key.short());
            }
            sessions.revoke(&key).await?;
            println!("revoked session {}…", key.short());
        }
        _ => bail!("give exactly one of --subject and --handle"),
    }
    Ok(())
}

fn short(text: &str) -> String {
    text.chars().take(12).collect()
}

/// `tessera purge`: removes expired sessions in batches, with a progress bar on a terminal and
/// the count at the end.
///
/// # Errors
///
/// A store failure.
pub(crate) async fn purge(store: &StoreUrl) -> anyhow::Result<()> {
    const BATCH: usize = 500;
    let sessions = open(store).await?;
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} purging expired sessions: {pos} removed ({per_sec})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(Duration::from_millis(100));
    let mut total = 0u64;
    loop {
        let n = sessions
            .store()
            .purge_expired(sessions.now(), BATCH)
            .await
            .context("purging failed")?;
        total += n;
        bar.inc(n);
        if n < BATCH as u64 {
            break;
        }
    }
    bar.finish_and_clear();
    println!("purged {total} expired session(s)");
    Ok(())
}
