//! Messages in and out: `Content-Length` framed JSON-RPC on standard input
//! and output.
//!
//! A thread reads and parses messages into an unbounded channel, so that
//! while the server checks a pipeline the next edits queue up and can be
//! handled together. The reader is written here rather than taken from
//! `lsp-server`'s stdio transport because that one hands over one message at
//! a time (a rendezvous channel), stops at the first malformed message, and
//! allocates whatever `Content-Length` claims before reading it.

use std::io::{self, BufRead, Read as _, Write as _};

use crossbeam_channel::{Receiver, unbounded};
use lsp_server::Message;

/// The largest message read: a document of the largest size slipway reads,
/// escaped as JSON, fits.
const MAX_MESSAGE: u64 = 4 * crate::source::MAX_FILE_SIZE as u64;

/// Starts the reader thread. The channel closes at the end of input, or
/// after an `exit` notification.
pub(crate) fn stdin_messages() -> Receiver<Message> {
    let (tx, rx) = unbounded();
    let spawned = std::thread::Builder::new()
        .name("slipway-lsp-reader".into())
        .spawn(move || {
            let mut input = io::stdin().lock();
            loop {
                match read(&mut input) {
                    Ok(Some(Ok(msg))) => {
                        let exit = matches!(&msg, Message::Notification(n) if n.method == "exit");
                        if tx.send(msg).is_err() || exit {
                            break;
                        }
                    }
                    Ok(Some(Err(why))) => log(&format!("ignored a message: {why}")),
                    Ok(None) => break,
                    Err(e) => {
                        log(&format!("cannot read standard input: {e}"));
                        break;
                    }
                }
            }
        });
    if let Err(e) = spawned {
        // The channel's sender is dropped with the closure: the server sees
        // the end of input and stops.
        log(&format!("cannot start the reader thread: {e}"));
    }
    rx
}

/// One message: `Ok(None)` at the end of input, `Ok(Some(Err(..)))` for a
/// message that is not valid JSON-RPC (it is skipped; reading goes on).
fn read(input: &mut impl BufRead) -> io::Result<Option<Result<Message, String>>> {
    let mut length: Option<u64> = None;
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let header = line.trim_end_matches(['\r', '\n']);
        if header.is_empty() {
            if length.is_some() {
                break;
            }
            // Blank lines between messages: tolerated.
            continue;
        }
        if let Some((name, value)) = header.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok();
                if length.is_none() {
                    return Ok(Some(Err(format!("bad header `{header}`"))));
                }
            }
        }
    }
    let length = length.unwrap_or(0);
    if length > MAX_MESSAGE {
        // Skip it without holding it in memory.
        io::copy(&mut input.take(length), &mut io::sink())?;
        return Ok(Some(Err(format!(
            "a message of {length} bytes is too large"
        ))));
    }
    let mut body = Vec::new();
    input.take(length).read_to_end(&mut body)?;
    if (body.len() as u64) < length {
        return Ok(None);
    }
    Ok(Some(
        serde_json::from_slice::<Message>(&body).map_err(|e| format!("not JSON-RPC: {e}")),
    ))
}

/// Writes one message to standard output.
pub(crate) fn send(msg: impl Into<Message>) {
    let msg: Message = msg.into();
    let mut out = io::stdout().lock();
    if let Err(e) = msg.write(&mut out).and_then(|()| out.flush()) {
        log(&format!("cannot write to standard output: {e}"));
    }
}

/// A line on standard error, which editors show as the server's log.
pub(crate) fn log(message: &str) {
    eprintln!("slipway lsp: {message}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(body: &str) -> String {
        format!("Content-Length: {}\r\n\r\n{body}", body.len())
    }

    #[test]
    fn reads_messages_and_skips_bad_ones() {
        let input = [
            framed(r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#),
            framed("not json"),
            "Content-Length: many\r\n\r\n".to_string(),
            framed(r#"{"jsonrpc":"2.0","method":"exit"}"#),
        ]
        .concat();
        let mut r = io::Cursor::new(input.into_bytes());
        assert!(matches!(read(&mut r), Ok(Some(Ok(Message::Request(_))))));
        assert!(matches!(read(&mut r), Ok(Some(Err(_)))));
        assert!(matches!(read(&mut r), Ok(Some(Err(_)))));
        assert!(matches!(
            read(&mut r),
            Ok(Some(Ok(Message::Notification(_))))
        ));
        assert!(matches!(read(&mut r), Ok(None)));
    }

    #[test]
    fn a_huge_length_is_not_allocated() {
        let mut r = io::Cursor::new(b"Content-Length: 99999999999999\r\n\r\n{}".to_vec());
        assert!(matches!(read(&mut r), Ok(Some(Err(_)) | None)));
    }
}
