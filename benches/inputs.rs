//! The stage cache's input hashing (`slipway::cache::index`), against
//! baselines measured in the same run (`scripts/bench-cache` runs it):
//!
//! - hashing 1 GiB of files read cold from disk, against reading the same
//!   files cold without hashing (goal: 1 GB/s or more);
//! - deciding a stage's inputs digest with 1,000 files and a warm index,
//!   against a bare `stat` of the same files (goal: under 5 ms).
//!
//! Cold means the page cache was dropped (`/proc/sys/vm/drop_caches`, as
//! root); where it cannot be, the figures say "warm".

use std::io::Read as _;
use std::path::Path;
use std::time::{Duration, Instant};

use slipway::cache::index::{Index, digest, matched};

fn drop_caches() -> bool {
    let _ = std::process::Command::new("sync").status();
    std::fs::write("/proc/sys/vm/drop_caches", "3").is_ok()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// Files of pseudo-random bytes (xorshift: compressible by nothing).
fn fill(root: &Path, dir: &str, count: usize, size: usize) {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut buf = vec![0u8; size];
    for i in 0..count {
        for chunk in buf.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
        }
        let p = root.join(dir).join(format!("{}/f{i}.bin", i % 16));
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, &buf).expect("write");
    }
}

fn read_all(root: &Path, files: &[String]) -> u64 {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    for f in files {
        let mut file = std::fs::File::open(root.join(f)).expect("open");
        loop {
            let n = file.read(&mut buf).expect("read");
            if n == 0 {
                break;
            }
            total += n as u64;
        }
    }
    total
}

fn main() {
    // Only under `cargo bench` (which passes `--bench`): test runners run
    // every target too (cargo-nextest asks it to `--list` its tests), and
    // this has none, only minutes of disk work.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    // `cargo bench` passes `--bench` first.
    let runs: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3);
    let dir = tempfile::tempdir_in(std::env::var_os("TMPDIR").unwrap_or_else(|| "/var/tmp".into()))
        .expect("tempdir");
    let root = dir.path();

    // 1 GiB in 256 files of 4 MiB.
    fill(root, "big", 256, 4 << 20);
    let big = vec!["big/**".to_string()];
    let files = matched(root, &big).expect("globs");
    let bytes = (256u64) * (4 << 20);
    let (mut hashing, mut reading) = (Vec::new(), Vec::new());
    let mut cold = true;
    for _ in 0..runs {
        cold &= drop_caches();
        let t = Instant::now();
        assert_eq!(read_all(root, &files), bytes);
        reading.push(t.elapsed());
        cold &= drop_caches();
        let mut index = Index::default();
        let t = Instant::now();
        let (_, n) = digest(root, &big, &mut index).expect("digest");
        hashing.push(t.elapsed());
        assert_eq!((n, index.hashed), (256, 256));
    }
    let gbps = |d: Duration| bytes as f64 / d.as_secs_f64() / 1e9;
    let (h, r) = (median(hashing), median(reading));
    println!(
        "hashing 1 GiB {}: {:.2} GB/s ({:.0} ms); reading it alone: {:.2} GB/s ({:.0} ms); hashing/reading time {:.2}; goal 1 GB/s: {:.2}x",
        if cold {
            "cold"
        } else {
            "warm (the page cache could not be dropped)"
        },
        gbps(h),
        h.as_secs_f64() * 1e3,
        gbps(r),
        r.as_secs_f64() * 1e3,
        h.as_secs_f64() / r.as_secs_f64(),
        gbps(h)
    );

    // 1,000 small files, the index warm (written, files aged past the racy
    // window by their times).
    fill(root, "src", 1000, 2048);
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let small = vec!["src/**".to_string()];
    let files = matched(root, &small).expect("globs");
    for f in &files {
        std::fs::File::options()
            .write(true)
            .open(root.join(f))
            .expect("open")
            .set_times(std::fs::FileTimes::new().set_modified(old))
            .expect("times");
    }
    let index_path = root.join(".index");
    let mut index = Index::default();
    digest(root, &small, &mut index).expect("digest");
    index.save(&index_path).expect("save");
    let (mut deciding, mut statting) = (Vec::new(), Vec::new());
    for _ in 0..runs.max(5) {
        let t = Instant::now();
        for f in &files {
            std::fs::symlink_metadata(root.join(f)).expect("stat");
        }
        statting.push(t.elapsed());
        let t = Instant::now();
        let mut index = Index::open(&index_path);
        let (_, n) = digest(root, &small, &mut index).expect("digest");
        deciding.push(t.elapsed());
        assert_eq!((n, index.hashed, index.reused), (1000, 0, 1000));
    }
    let (d, s) = (median(deciding), median(statting));
    println!(
        "inputs digest with 1,000 files, index warm: {:.2} ms (read the index, walk, stat, match); a bare stat of them: {:.2} ms; ratio {:.1}; goal 5 ms: {:.2}x",
        d.as_secs_f64() * 1e3,
        s.as_secs_f64() * 1e3,
        d.as_secs_f64() / s.as_secs_f64(),
        d.as_secs_f64() * 1e3 / 5.0
    );
}
