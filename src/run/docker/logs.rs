//! A stage container's output, line by line as it comes, from its attached
//! streams, with the gate's end-of-script line taken out.

use std::pin::Pin;

use futures_util::StreamExt as _;

use crate::run::backend::Output;
use crate::run::events::Stream;

pub(super) type LogStream = Pin<
    Box<
        dyn futures_util::Stream<
                Item = Result<bollard::container::LogOutput, bollard::errors::Error>,
            > + Send,
    >,
>;

/// Streams a container's output line by line as it comes, from its
/// attached streams. The gate's end marker is taken out of the output;
/// once it has come on both streams, the script's status goes to `ended`.
pub(super) async fn stream_output(
    mut logs: LogStream,
    nonce: &str,
    output: &Output,
    ended: tokio::sync::oneshot::Sender<i32>,
) {
    let mut pending: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    // The status each stream's end marker gave.
    let mut marked: [Option<i32>; 2] = [None, None];
    while let Some(Ok(chunk)) = logs.next().await {
        let (which, kind, bytes) = match chunk {
            bollard::container::LogOutput::StdErr { message } => (1, Stream::Stderr, message),
            bollard::container::LogOutput::StdOut { message }
            | bollard::container::LogOutput::Console { message } => (0, Stream::Stdout, message),
            bollard::container::LogOutput::StdIn { .. } => continue,
        };
        let buf = &mut pending[which];
        buf.extend_from_slice(&bytes);
        while let Some(n) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=n).collect();
            let text = String::from_utf8_lossy(&line);
            let (shown, status) = crate::run::gate::read_line(&text, nonce);
            if status.is_some() {
                marked[which] = status;
            }
            if let Some(shown) = shown {
                output.line(kind, shown).await;
            }
        }
        if let [Some(status), Some(_)] = marked {
            let _ = ended.send(status);
            return;
        }
    }
    for (which, kind) in [(0, Stream::Stdout), (1, Stream::Stderr)] {
        if !pending[which].is_empty() {
            output
                .line(kind, &String::from_utf8_lossy(&pending[which]))
                .await;
        }
    }
}
