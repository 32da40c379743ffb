//! `resources { cpu "2" memory "4Gi" }`: Kubernetes quantities, read once
//! for `check`, the Docker backend's limits and the Pod's requests.

/// A CPU quantity in nano-CPUs: `2`, `0.5`, `500m`.
pub fn cpu_nanos(q: &str) -> Result<i64, String> {
    let bad = || format!("`{q}` is not a CPU quantity: write `2`, `0.5` or `500m`");
    let (number, scale) = match q.strip_suffix('m') {
        Some(n) => (n, 1e6),
        None => (q, 1e9),
    };
    let value = decimal(number).ok_or_else(bad)?;
    let nanos = (value * scale).round();
    if !(1e6..=1e15).contains(&nanos) {
        return Err(format!("`{q}` is out of range: between `1m` and `1000000`"));
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok(nanos as i64)
}

/// A memory quantity in bytes: `4Gi`, `512Mi`, `1G`, `100M`, `1024`.
pub fn memory_bytes(q: &str) -> Result<i64, String> {
    const UNITS: [(&str, f64); 10] = [
        ("Ki", 1024.0),
        ("Mi", 1_048_576.0),
        ("Gi", 1_073_741_824.0),
        ("Ti", 1_099_511_627_776.0),
        ("k", 1e3),
        ("K", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
        ("", 1.0),
    ];
    let bad = || format!("`{q}` is not a memory quantity: write `4Gi`, `512Mi` or `1G`");
    let (number, scale) = UNITS
        .iter()
        .find_map(|(unit, scale)| q.strip_suffix(unit).map(|n| (n, *scale)))
        .ok_or_else(bad)?;
    let value = decimal(number).ok_or_else(bad)?;
    let bytes = (value * scale).round();
    // The Docker engine takes no less than 6 MiB.
    if !(6.0 * 1_048_576.0..=1e15).contains(&bytes) {
        return Err(format!("`{q}` is out of range: at least `6Mi`"));
    }
    #[allow(clippy::cast_possible_truncation)]
    Ok(bytes as i64)
}

/// `12`, `0.5`: digits with at most one point, nothing else.
fn decimal(s: &str) -> Option<f64> {
    let ok = !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || c == '.')
        && s.chars().filter(|c| *c == '.').count() <= 1
        && s.chars().any(|c| c.is_ascii_digit());
    ok.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_read_as_kubernetes_writes_them() {
        assert_eq!(cpu_nanos("2"), Ok(2_000_000_000));
        assert_eq!(cpu_nanos("0.5"), Ok(500_000_000));
        assert_eq!(cpu_nanos("500m"), Ok(500_000_000));
        assert!(cpu_nanos("two").is_err());
        assert!(cpu_nanos("1.2.3").is_err());
        assert!(cpu_nanos("0").is_err());
        assert_eq!(memory_bytes("4Gi"), Ok(4 * 1024 * 1024 * 1024));
        assert_eq!(memory_bytes("512Mi"), Ok(512 * 1024 * 1024));
        assert_eq!(memory_bytes("1G"), Ok(1_000_000_000));
        assert_eq!(memory_bytes("100000000"), Ok(100_000_000));
        assert!(memory_bytes("4 Gi").is_err());
        assert!(memory_bytes("4GB").is_err());
        assert!(memory_bytes("1Ki").is_err(), "below the engine's minimum");
    }
}
