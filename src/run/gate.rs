//! The gate every stage's script runs behind, on Docker and on
//! Kubernetes: the container starts at once, and its script waits for one
//! line on standard input (or its end, which stops it). After the script,
//! the gate writes `NONCE STATUS` on standard output and standard error,
//! so slipway knows the script ended, and has every line before it, sooner
//! than the engine or the kubelet report the container's exit.

/// The container's command is `sh -c GATE sh SCRIPT NONCE`: it runs the
/// stage's `sh -e -c SCRIPT` (`$1`) with empty input (the container's own
/// may stay open: on Kubernetes, the attach that sent the gate's line
/// also reads the output), then writes `NONCE STATUS` (`$2`) on
/// both streams, and exits with the script's status once its input ends
/// (at once on Docker, where it ended with the gate's line; on Kubernetes,
/// once slipway has copied the stage's artifacts out).
pub(crate) const GATE: &str = "read -r _ || exit 0; sh -e -c \"$1\" </dev/null; s=$?; echo \"$2 $s\"; echo \"$2 $s\" >&2; read -r _; exit $s";

/// The gated command for `script`, ending with `nonce`.
pub(crate) fn command(script: &str, nonce: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        GATE.into(),
        "sh".into(),
        script.to_string(),
        nonce.into(),
    ]
}

/// A fresh end-of-script marker: random, so that no output can pass for it
/// (the clock, should the system's generator fail).
pub(crate) fn nonce() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        bytes = jiff::Timestamp::now().as_nanosecond().to_le_bytes();
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("slipway-end-{hex}")
}

/// Reads one line of output: what to show of it, and the status when it
/// carries the end marker (a script's last output without a line break
/// comes before the marker on the same line).
pub(crate) fn read_line<'a>(line: &'a str, nonce: &str) -> (Option<&'a str>, Option<i32>) {
    if let Some(at) = line.find(nonce) {
        let status = line[at..].split_whitespace().nth(1).map(str::parse::<i32>);
        if let Some(Ok(status)) = status {
            let shown = &line[..at];
            return ((!shown.is_empty()).then_some(shown), Some(status));
        }
    }
    (Some(line), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_marker_is_read_and_never_shown() {
        let n = "slipway-end-00";
        assert_eq!(read_line("hello\n", n), (Some("hello\n"), None));
        assert_eq!(read_line("slipway-end-00 3\n", n), (None, Some(3)));
        assert_eq!(
            read_line("no newlineslipway-end-00 0\n", n),
            (Some("no newline"), Some(0))
        );
        assert_eq!(
            read_line("slipway-end-00 x\n", n),
            (Some("slipway-end-00 x\n"), None)
        );
    }
}
