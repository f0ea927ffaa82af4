//! E-mail: one message (`.eml`, RFC 5322 with MIME) or a mailbox of them
//! (`.mbox`), parsed by `mail-parser` (charsets, encoded words, base64 and
//! quoted-printable, nested messages). Each message is a section headed by
//! its subject, holding its header lines (From, To, Cc, Date, Subject) and
//! its text bodies (an HTML-only body is read by the HTML loader); each
//! attachment is loaded by the loader of its own format, under
//! `subject > Attachment: name`, and attached messages the same way, as
//! deep as [`MAX_DEPTH`].

use crate::compose::Composer;
use crate::{IngestError, LoadLimits};
use cairn_core::{Document, Format};
use mail_parser::{Address, Message, MessageParser, MimeHeaders};
use std::path::Path;

/// Messages inside messages (attached, or attachments that are
/// themselves e-mail files) read this deep; deeper ones are named only.
const MAX_DEPTH: u32 = 3;
/// Attachments read per message.
const MAX_ATTACHMENTS: usize = 64;

fn addresses(a: Option<&Address<'_>>) -> String {
    let Some(a) = a else { return String::new() };
    a.iter()
        .map(|x| match (x.name(), x.address()) {
            (Some(n), Some(ad)) => format!("{n} <{ad}>"),
            (Some(n), None) => n.to_string(),
            (None, Some(ad)) => ad.to_string(),
            (None, None) => String::new(),
        })
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The subject, or a stand-in.
fn subject(msg: &Message<'_>) -> String {
    let s = msg
        .subject()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    if s.is_empty() {
        "(no subject)".into()
    } else {
        s
    }
}

/// Append one message (and its attachments, recursively) under `prefix`.
fn push_message(
    out: &mut Composer,
    prefix: &[String],
    msg: &Message<'_>,
    limits: &LoadLimits,
    depth: u32,
) {
    let title = subject(msg);
    let mut path = prefix.to_vec();
    path.push(title.clone());
    let mut text = String::new();
    for (label, value) in [
        ("From", addresses(msg.from())),
        ("To", addresses(msg.to())),
        ("Cc", addresses(msg.cc())),
        (
            "Date",
            msg.date().map(|d| d.to_rfc3339()).unwrap_or_default(),
        ),
        ("Subject", title.clone()),
    ] {
        if !value.is_empty() {
            text.push_str(&format!("{label}: {value}\n"));
        }
    }
    for i in 0..msg.text_body_count() {
        let Some(part) = msg.text_part(i as u32) else {
            continue;
        };
        let body = if part.is_text_html() {
            crate::html::load(part.contents()).text
        } else {
            part.text_contents()
                .map(str::to_string)
                .unwrap_or_else(|| String::from_utf8_lossy(part.contents()).into_owned())
        };
        let body = crate::text::normalize_newlines(body);
        if !body.trim().is_empty() {
            text.push('\n');
            text.push_str(body.trim_end());
            text.push('\n');
        }
    }
    out.push_text(&path, &text);

    let attachments: Vec<_> = msg.attachments().collect();
    if attachments.len() > MAX_ATTACHMENTS {
        out.warnings.push(format!(
            "{title:?}: {} attachments; only the first {MAX_ATTACHMENTS} were read",
            attachments.len()
        ));
    }
    for (i, part) in attachments.into_iter().take(MAX_ATTACHMENTS).enumerate() {
        if let Some(inner) = part.message() {
            if depth + 1 >= MAX_DEPTH {
                out.warnings.push(format!(
                    "{title:?}: a message attached {MAX_DEPTH} deep was not read"
                ));
                continue;
            }
            let mut p = path.clone();
            p.push("Attachment".into());
            push_message(out, &p, inner, limits, depth + 1);
            continue;
        }
        let name = part
            .attachment_name()
            .map(|n| n.rsplit(['/', '\\']).next().unwrap_or(n).to_string())
            .filter(|n| !n.trim().is_empty())
            .unwrap_or_else(|| format!("attachment-{}", i + 1));
        let what = format!("attachment {name}");
        let ext = Path::new(&name)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("");
        if cairn_core::is_known_binary_extension(ext) {
            out.warnings
                .push(format!("{what}: not a document format, skipped"));
            continue;
        }
        if part.contents().is_empty() {
            continue;
        }
        let is_mail = matches!(
            Format::from_extension(ext),
            Some(Format::Email | Format::Mbox)
        );
        if is_mail && depth + 1 >= MAX_DEPTH {
            out.warnings.push(format!(
                "{what}: a message attached {MAX_DEPTH} deep was not read"
            ));
            continue;
        }
        let loaded = if is_mail {
            load_nested(Path::new(&name), part.contents(), limits, depth + 1)
        } else {
            crate::load_with(Path::new(&name), part.contents(), limits)
        };
        match loaded {
            Ok(doc) => {
                let mut p = path.clone();
                p.push(format!("Attachment: {name}"));
                out.push_doc(&p, doc, Some(&what));
            }
            Err(e) => out.warnings.push(format!("{what}: {}", e.reason())),
        }
    }
}

fn parse<'x>(path: &Path, bytes: &'x [u8]) -> Result<Message<'x>, IngestError> {
    MessageParser::default()
        .parse(bytes)
        .ok_or_else(|| IngestError::Corrupt {
            path: path.to_path_buf(),
            format: "e-mail",
            reason: "no message headers could be read".into(),
        })
}

fn load_nested(
    path: &Path,
    bytes: &[u8],
    limits: &LoadLimits,
    depth: u32,
) -> Result<Document, IngestError> {
    let mut out = Composer::new();
    if matches!(
        path.extension()
            .and_then(|e| e.to_str())
            .and_then(Format::from_extension),
        Some(Format::Mbox)
    ) {
        push_mbox(&mut out, path, bytes, limits, depth)?;
        return Ok(out.finish(Format::Mbox));
    }
    let msg = parse(path, bytes)?;
    push_message(&mut out, &[], &msg, limits, depth);
    Ok(out.finish(Format::Email))
}

fn push_mbox(
    out: &mut Composer,
    path: &Path,
    bytes: &[u8],
    limits: &LoadLimits,
    depth: u32,
) -> Result<(), IngestError> {
    let mut found = 0usize;
    for (i, m) in
        mail_parser::mailbox::mbox::MessageIterator::new(std::io::Cursor::new(bytes)).enumerate()
    {
        let m = m.map_err(|e| IngestError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
        found += 1;
        match MessageParser::default().parse(m.contents()) {
            Some(msg) => push_message(out, &[], &msg, limits, depth),
            None => out
                .warnings
                .push(format!("message {} could not be read", i + 1)),
        }
    }
    if found == 0 {
        return Err(IngestError::Corrupt {
            path: path.to_path_buf(),
            format: "mbox",
            reason: "no message (a mailbox's messages start with a \"From \" line)".into(),
        });
    }
    Ok(())
}

/// Load one e-mail message.
pub(crate) fn load_message(
    path: &Path,
    bytes: &[u8],
    limits: &LoadLimits,
) -> Result<Document, IngestError> {
    load_nested(path, bytes, limits, 0)
}

/// Load a mailbox.
pub(crate) fn load_mbox(
    path: &Path,
    bytes: &[u8],
    limits: &LoadLimits,
) -> Result<Document, IngestError> {
    let mut out = Composer::new();
    push_mbox(&mut out, path, bytes, limits, 0)?;
    Ok(out.finish(Format::Mbox))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIL: &str = "From: Ada Lovelace <ada@example.org>\r\nTo: Charles <cb@example.org>\r\nSubject: =?utf-8?q?The_engine=E2=80=99s_notes?=\r\nDate: Mon, 7 Mar 1843 08:00:00 +0000\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nThe engine computes Bernoulli numbers=2E\r\n--b1\r\nContent-Type: text/csv; name=\"table.csv\"\r\nContent-Disposition: attachment; filename=\"table.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\nbixCCjEsMC41Cg==\r\n--b1--\r\n";

    #[test]
    fn a_message_with_headers_body_and_an_attachment() {
        let doc =
            load_message(Path::new("m.eml"), MAIL.as_bytes(), &LoadLimits::default()).unwrap();
        assert_eq!(doc.format, Format::Email);
        assert!(
            doc.text.contains("From: Ada Lovelace <ada@example.org>"),
            "{}",
            doc.text
        );
        assert!(
            doc.text.contains("Subject: The engine\u{2019}s notes"),
            "{}",
            doc.text
        );
        assert!(
            doc.text.contains("The engine computes Bernoulli numbers."),
            "{}",
            doc.text
        );
        assert!(doc.text.contains("n: 1; B: 0.5"), "{}", doc.text);
        let paths: Vec<String> = doc
            .sections
            .iter()
            .map(|s| s.headings.join(" > "))
            .collect();
        assert_eq!(
            paths,
            [
                "The engine\u{2019}s notes",
                "The engine\u{2019}s notes > Attachment: table.csv"
            ]
        );
    }

    #[test]
    fn a_mailbox_is_its_messages() {
        let mbox = format!("From ada@example.org Mon Mar  7 08:00:00 1843\n{}\nFrom cb@example.org Tue Mar  8 08:00:00 1843\nSubject: Reply\n\n>From the start, yes.\n", MAIL.replace("\r\n", "\n"));
        let doc = load_mbox(
            Path::new("box.mbox"),
            mbox.as_bytes(),
            &LoadLimits::default(),
        )
        .unwrap();
        let paths: Vec<String> = doc
            .sections
            .iter()
            .map(|s| s.headings.join(" > "))
            .collect();
        assert_eq!(paths[0], "The engine\u{2019}s notes");
        assert_eq!(paths.last().unwrap(), "Reply");
        assert!(doc.text.contains("From the start, yes."), "{}", doc.text);
        let err = load_mbox(
            Path::new("x.mbox"),
            b"no from line\n",
            &LoadLimits::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("corrupt mbox"), "{err}");
    }
}
