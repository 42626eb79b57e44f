//! Outgoing mail (the weekly reminders), through a configurable transport: `log` (the
//! default: the envelope is logged, nothing is sent), `sendmail[:PATH]` (the machine's MTA,
//! `sendmail -t`-compatible, e.g. Postfix or msmtp relaying to the ministry's server) or
//! `dir:PATH` (one `.eml` file per letter, for a pickup directory or for tests). Messages
//! are built by lettre (headers, encoding); the letters name places and weeks, never a
//! child.

use std::path::PathBuf;

use lettre::message::Mailbox;
use lettre::{Message, Transport};

use crate::error::{AppError, AppResult};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum MailTransport {
    #[default]
    Log,
    Sendmail(Option<PathBuf>),
    Directory(PathBuf),
}

impl MailTransport {
    /// `log`, `sendmail`, `sendmail:/usr/sbin/sendmail`, `dir:/var/spool/opora-mail`.
    pub fn parse(raw: &str) -> Result<Self, String> {
        match raw.split_once(':') {
            None if raw == "log" => Ok(Self::Log),
            None if raw == "sendmail" => Ok(Self::Sendmail(None)),
            Some(("sendmail", path)) if !path.is_empty() => {
                Ok(Self::Sendmail(Some(PathBuf::from(path))))
            }
            Some(("dir", path)) if !path.is_empty() => Ok(Self::Directory(PathBuf::from(path))),
            _ => Err(format!(
                "«{raw}»: ожидается log, sendmail, sendmail:ПУТЬ или dir:КАТАЛОГ"
            )),
        }
    }
}

/// Who sends, and how.
#[derive(Debug, Clone)]
pub struct Mailer {
    pub transport: MailTransport,
    pub from: String,
}

impl Default for Mailer {
    fn default() -> Self {
        Self {
            transport: MailTransport::Log,
            from: "Опора <opora@localhost>".to_owned(),
        }
    }
}

/// One letter; `to` is `None` when the recipient has no address (counted, not sent).
#[derive(Debug, Clone)]
pub struct Letter {
    pub to: Option<String>,
    pub subject: String,
    pub body: String,
}

/// What a sending did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    pub sent: usize,
    pub without_address: usize,
    pub failed: usize,
}

impl Mailer {
    pub async fn send_all(&self, letters: &[Letter]) -> AppResult<Sent> {
        let mailer = self.clone();
        let letters = letters.to_vec();
        tokio::task::spawn_blocking(move || mailer.send_blocking(&letters))
            .await
            .map_err(|e| AppError::Unexpected(e.into()))?
    }

    fn send_blocking(&self, letters: &[Letter]) -> AppResult<Sent> {
        let from: Mailbox = self
            .from
            .parse()
            .map_err(|e| AppError::Unexpected(anyhow::anyhow!("mail sender: {e}")))?;
        let mut sent = Sent::default();
        for letter in letters {
            let Some(to) = letter.to.as_deref().and_then(|t| t.parse::<Mailbox>().ok()) else {
                sent.without_address += 1;
                continue;
            };
            let message = Message::builder()
                .from(from.clone())
                .to(to)
                .subject(letter.subject.clone())
                .body(letter.body.clone())
                .map_err(|e| AppError::Unexpected(anyhow::anyhow!("mail: {e}")))?;
            let outcome = match &self.transport {
                MailTransport::Log => {
                    tracing::info!(subject = %letter.subject, "mail (log transport): not sent");
                    Ok(())
                }
                MailTransport::Sendmail(path) => {
                    let transport = match path {
                        Some(path) => lettre::SendmailTransport::new_with_command(path),
                        None => lettre::SendmailTransport::new(),
                    };
                    transport.send(&message).map_err(|e| e.to_string())
                }
                MailTransport::Directory(dir) => lettre::FileTransport::new(dir)
                    .send(&message)
                    .map(|_| ())
                    .map_err(|e| e.to_string()),
            };
            match outcome {
                Ok(()) => sent.sent += 1,
                Err(error) => {
                    tracing::warn!(%error, "a letter could not be handed to the mail transport");
                    sent.failed += 1;
                }
            }
        }
        tracing::info!(
            sent = sent.sent,
            without_address = sent.without_address,
            failed = sent.failed,
            "reminders"
        );
        Ok(sent)
    }
}
