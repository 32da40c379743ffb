//! Image references (`registry:5000/team/app:tag@sha256:...`), read once
//! with the rules of Docker's distribution reference
//! (`github.com/distribution/reference`), for everyone: the plan makes
//! tags valid, builds tag and push, the Docker backend pulls, and releases
//! pin images to digests.
//!
//! - The first path component is a registry (a *domain*) only when more
//!   follows it and it contains `.`, is `localhost`, has an upper-case
//!   letter, or ends in a port (`:` and digits): `localhost:5000/chat`,
//!   `registry.example.com/a/b`. Otherwise the reference names a Docker Hub
//!   repository (`node`, `team/app`).
//! - A port's `:` is not a tag's: the tag begins at the first `:` after the
//!   domain (a valid reference has only one there). So `chat:feature/x`, a
//!   tag with a branch's `/` in it, is `chat` tagged `feature/x`, which the
//!   plan can make valid, rather than a registry `chat:feature`.
//! - The digest follows the `@`, after the tag if there is one.
//!
//! [`ImageRef::split`] cuts a reference where these rules say and checks
//! nothing, so that the plan can mend a tag and the engine can say what is
//! wrong with a reference in its own words; [`ImageRef::parse`] also checks
//! each part against the grammar.

use std::fmt;

/// Docker Hub, where a reference without a registry points.
const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's old name, the same registry.
const DOCKER_HUB_LEGACY: &str = "index.docker.io";
/// Docker Hub's namespace of official images (`node` is `library/node`).
const OFFICIAL: &str = "library/";
/// The longest repository name (domain and path) a registry takes.
const NAME_MAX: usize = 255;

/// An image reference cut into its parts, each as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRef {
    domain: Option<String>,
    path: String,
    tag: Option<String>,
    digest: Option<String>,
}

/// Why a reference is not valid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Invalid {
    #[error("an image reference cannot be empty")]
    Empty,
    #[error("repository name must be lowercase")]
    Uppercase,
    #[error("`{0}` is not a registry host")]
    Domain(String),
    #[error("`{0}` is not a repository name")]
    Path(String),
    #[error("a repository name cannot be 64 hexadecimal digits")]
    Hex,
    #[error("repository name must not be longer than {NAME_MAX} characters")]
    TooLong,
    #[error(
        "`{0}` is not a tag (letters, digits, `_`, `.` and `-`, at most 128, not starting with `.` or `-`)"
    )]
    Tag(String),
    #[error("`{0}` is not a digest (`algorithm:hex`)")]
    Digest(String),
}

impl ImageRef {
    /// Cuts `raw` into domain, path, tag and digest, checking nothing:
    /// `ImageRef::split(raw).to_string() == raw` for any text.
    pub(crate) fn split(raw: &str) -> Self {
        let (name, digest) = match raw.split_once('@') {
            Some((name, digest)) => (name, Some(digest.to_string())),
            None => (raw, None),
        };
        let (domain, rest) = match name.split_once('/') {
            Some((first, rest)) if is_domain(first) => (Some(first.to_string()), rest),
            _ => (None, name),
        };
        let (path, tag) = match rest.split_once(':') {
            Some((path, tag)) => (path.to_string(), Some(tag.to_string())),
            None => (rest.to_string(), None),
        };
        Self {
            domain,
            path,
            tag,
            digest,
        }
    }

    /// A reference checked against Docker's grammar.
    pub(crate) fn parse(raw: &str) -> Result<Self, Invalid> {
        if raw.is_empty() {
            return Err(Invalid::Empty);
        }
        let image = Self::split(raw);
        if let Some(domain) = image.domain.as_ref().filter(|d| !valid_domain(d)) {
            return Err(Invalid::Domain(domain.clone()));
        }
        if !image.path.split('/').all(path_component) {
            let lower = image.path.to_ascii_lowercase();
            return Err(if lower.split('/').all(path_component) {
                Invalid::Uppercase
            } else {
                Invalid::Path(image.path.clone())
            });
        }
        if image.domain.is_none()
            && image.path.len() == 64
            && image.path.bytes().all(|b| b.is_ascii_hexdigit())
        {
            return Err(Invalid::Hex);
        }
        if image.repository().len() > NAME_MAX {
            return Err(Invalid::TooLong);
        }
        if let Some(tag) = image.tag.as_ref().filter(|t| !valid_tag(t)) {
            return Err(Invalid::Tag(tag.clone()));
        }
        if let Some(digest) = image.digest.as_ref().filter(|d| !valid_digest(d)) {
            return Err(Invalid::Digest(digest.clone()));
        }
        Ok(image)
    }

    pub(crate) fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    pub(crate) fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The repository as written, without tag or digest:
    /// `localhost:5000/chat`, `node`.
    pub(crate) fn repository(&self) -> String {
        match &self.domain {
            Some(domain) => format!("{domain}/{}", self.path),
            None => self.path.clone(),
        }
    }

    /// The same reference with `tag`.
    pub(crate) fn with_tag(mut self, tag: &str) -> Self {
        self.tag = Some(tag.to_string());
        self
    }

    /// The same reference pinned to `digest` (`sha256:...`), its tag kept
    /// for people to read.
    pub(crate) fn with_digest(mut self, digest: &str) -> Self {
        self.digest = Some(digest.to_string());
        self
    }

    /// The full form a registry is asked for: `node:20` is
    /// `docker.io/library/node:20`.
    pub(crate) fn normalized(&self) -> Self {
        let domain = match self.domain.as_deref() {
            None | Some(DOCKER_HUB_LEGACY) => DOCKER_HUB,
            Some(domain) => domain,
        };
        let path = if domain == DOCKER_HUB && !self.path.contains('/') {
            format!("{OFFICIAL}{}", self.path)
        } else {
            self.path.clone()
        };
        Self {
            domain: Some(domain.to_string()),
            path,
            ..self.clone()
        }
    }

    /// The short form the engine shows (`docker images`, `RepoDigests`):
    /// `docker.io/library/node:20` is `node:20`.
    pub(crate) fn familiar(&self) -> Self {
        let full = self.normalized();
        if full.domain.as_deref() != Some(DOCKER_HUB) {
            return full;
        }
        let path = match full.path.strip_prefix(OFFICIAL) {
            Some(name) if !name.contains('/') => name.to_string(),
            _ => full.path.clone(),
        };
        Self {
            domain: None,
            path,
            ..full
        }
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(domain) = &self.domain {
            write!(f, "{domain}/")?;
        }
        f.write_str(&self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Whether a reference's first path component (with more after it) names
/// a registry: it has a port, a `.`, is `localhost`, is an IPv6 address,
/// or has an upper-case letter (repositories never do). A `:` before
/// anything but digits is a tag's, not a port's.
fn is_domain(first: &str) -> bool {
    let (host, port) = host_port(first);
    match port {
        Some(port) => is_port(port),
        None => {
            host.contains('.')
                || host == "localhost"
                || host.starts_with('[')
                || host.bytes().any(|b| b.is_ascii_uppercase())
        }
    }
}

/// `host:port` → (`host`, `port`); an IPv6 host keeps its brackets.
fn host_port(domain: &str) -> (&str, Option<&str>) {
    let end = match domain.strip_prefix('[') {
        Some(inner) => inner.find(']').map_or(domain.len(), |at| at + 2),
        None => domain.find(':').unwrap_or(domain.len()),
    };
    let (host, rest) = domain.split_at(end);
    match rest {
        "" => (host, None),
        rest => (host, Some(rest.strip_prefix(':').unwrap_or(rest))),
    }
}

fn is_port(port: &str) -> bool {
    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
}

/// A host name (`.`-joined labels of letters, digits and inner `-`) or a
/// bracketed IPv6 address, with an optional port.
fn valid_domain(domain: &str) -> bool {
    let (host, port) = host_port(domain);
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(ip) => !ip.is_empty() && ip.bytes().all(|b| b.is_ascii_hexdigit() || b == b':'),
        None => host.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        }),
    };
    host_ok && port.is_none_or(is_port)
}

/// Runs of `[a-z0-9]` joined by `.`, `_`, `__` or dashes.
fn path_component(component: &str) -> bool {
    // Cut at every `[a-z0-9]`, what is left are the joins: empty between
    // two such characters, and first when the component starts with one.
    let mut joins = component.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    !component.is_empty()
        && joins.next() == Some("")
        && component.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && joins.all(|j| matches!(j, "" | "." | "_" | "__") || j.bytes().all(|b| b == b'-'))
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn valid_tag(tag: &str) -> bool {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    tag.len() <= 128
        && tag.bytes().next().is_some_and(word)
        && tag.bytes().all(|b| word(b) || b == b'.' || b == b'-')
}

/// `algorithm:hex`: the algorithm's parts start with a letter and are
/// joined by `-`, `_`, `+` or `.`; at least 32 hexadecimal digits.
fn valid_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    hex.len() >= 32
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && algorithm.split(['-', '_', '+', '.']).all(|part| {
            part.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
                && part.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

/// A valid tag made of any text: `[A-Za-z0-9_.-]`, not starting with `.`
/// or `-`, at most 128 characters, `latest` when nothing is left.
pub fn sanitize_tag(raw: &str) -> String {
    let mut t: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while t.starts_with(['.', '-']) {
        t.remove(0);
    }
    t.truncate(128);
    if t.is_empty() { "latest".into() } else { t }
}

#[cfg(test)]
mod tests {
    use super::{ImageRef, Invalid};

    const SHA: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// Domain, path, tag and digest, as written.
    fn parts(raw: &str) -> [Option<String>; 4] {
        let i = ImageRef::split(raw);
        [i.domain, Some(i.path), i.tag, i.digest]
    }

    #[test]
    fn references_are_cut_by_docker_rules() {
        let digested = format!("localhost:5000/chat@{SHA}");
        let everything = format!("registry.example.com:443/a/b/c:tag@{SHA}");
        let table: Vec<(&str, [Option<&str>; 4])> = vec![
            ("node", [None, Some("node"), None, None]),
            ("node:20", [None, Some("node"), Some("20"), None]),
            ("team/app:v1", [None, Some("team/app"), Some("v1"), None]),
            (
                "localhost:5000/chat:main-abc",
                [Some("localhost:5000"), Some("chat"), Some("main-abc"), None],
            ),
            (
                "localhost:5000/chat",
                [Some("localhost:5000"), Some("chat"), None, None],
            ),
            (
                &digested,
                [Some("localhost:5000"), Some("chat"), None, Some(SHA)],
            ),
            (
                &everything,
                [
                    Some("registry.example.com:443"),
                    Some("a/b/c"),
                    Some("tag"),
                    Some(SHA),
                ],
            ),
            (
                "localhost/chat",
                [Some("localhost"), Some("chat"), None, None],
            ),
            (
                "reg.io/team/chat",
                [Some("reg.io"), Some("team/chat"), None, None],
            ),
            (
                "[::1]:5000/chat:1",
                [Some("[::1]:5000"), Some("chat"), Some("1"), None],
            ),
            // Docker takes an upper-case first component for a host.
            (
                "Library/UPPER",
                [Some("Library"), Some("UPPER"), None, None],
            ),
            // A name without a slash has no domain: `localhost:5000` is
            // `localhost` tagged `5000`.
            (
                "localhost:5000",
                [None, Some("localhost"), Some("5000"), None],
            ),
            // A `:` before anything but a port's digits begins the tag.
            (
                "chat:feature/x",
                [None, Some("chat"), Some("feature/x"), None],
            ),
            (
                "localhost:5000/chat:feature/x",
                [
                    Some("localhost:5000"),
                    Some("chat"),
                    Some("feature/x"),
                    None,
                ],
            ),
            (
                "myhost:5000/chat",
                [Some("myhost:5000"), Some("chat"), None, None],
            ),
            ("chat:", [None, Some("chat"), Some(""), None]),
        ];
        for (raw, expected) in table {
            assert_eq!(
                parts(raw),
                expected.map(|p| p.map(String::from)),
                "cutting `{raw}`"
            );
            assert_eq!(ImageRef::split(raw).to_string(), raw, "writing `{raw}`");
        }
    }

    #[test]
    fn parse_checks_every_part() {
        let valid = [
            "node".to_string(),
            "node:20".into(),
            "localhost:5000/chat:main-abc".into(),
            format!("localhost:5000/chat@{SHA}"),
            format!("registry.example.com:443/a/b/c:tag@{SHA}"),
            "Library/upper".into(),
            "a__b/c-d---e/f.g_h:V1.0_x".into(),
            "[::1]:5000/chat".into(),
        ];
        for raw in &valid {
            assert!(ImageRef::parse(raw).is_ok(), "`{raw}` is valid");
        }
        let invalid = [
            ("", Invalid::Empty),
            ("UPPER", Invalid::Uppercase),
            ("Library/UPPER", Invalid::Uppercase),
            ("chat:feature/x", Invalid::Tag("feature/x".into())),
            ("chat:-x", Invalid::Tag("-x".into())),
            ("chat:", Invalid::Tag(String::new())),
            ("chat@sha256:abc", Invalid::Digest("sha256:abc".into())),
            ("a..b/c", Invalid::Domain("a..b".into())),
            ("-chat", Invalid::Path("-chat".into())),
            ("chat/", Invalid::Path("chat/".into())),
            ("a//b", Invalid::Path("a//b".into())),
            (
                "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                Invalid::Hex,
            ),
        ];
        for (raw, why) in invalid {
            assert_eq!(ImageRef::parse(raw), Err(why), "`{raw}` is invalid");
        }
        let long = format!("reg.io/{}", "a".repeat(250));
        assert_eq!(ImageRef::parse(&long), Err(Invalid::TooLong));
    }

    #[test]
    fn normalized_and_familiar_forms() {
        let forms = [
            ("node:20", "docker.io/library/node:20", "node:20"),
            ("library/node", "docker.io/library/node", "node"),
            ("docker.io/node", "docker.io/library/node", "node"),
            (
                "index.docker.io/library/node",
                "docker.io/library/node",
                "node",
            ),
            ("team/app", "docker.io/team/app", "team/app"),
            (
                "docker.io/library/a/b",
                "docker.io/library/a/b",
                "library/a/b",
            ),
            (
                "localhost:5000/chat:main",
                "localhost:5000/chat:main",
                "localhost:5000/chat:main",
            ),
            (
                "localhost:5000/library/node",
                "localhost:5000/library/node",
                "localhost:5000/library/node",
            ),
        ];
        for (raw, normalized, familiar) in forms {
            let image = ImageRef::split(raw);
            assert_eq!(image.normalized().to_string(), normalized, "`{raw}`");
            assert_eq!(image.familiar().to_string(), familiar, "`{raw}`");
        }
    }

    #[test]
    fn digests_and_tags_are_set() {
        let image = ImageRef::split("localhost:5000/chat:main").with_digest("sha256:ab");
        assert_eq!(image.to_string(), "localhost:5000/chat:main@sha256:ab");
        assert_eq!(image.repository(), "localhost:5000/chat");
        assert_eq!(image.tag(), Some("main"));
        assert_eq!(image.digest(), Some("sha256:ab"));
        let image = ImageRef::split("chat@sha256:old").with_digest("sha256:new");
        assert_eq!(image.to_string(), "chat@sha256:new");
        assert_eq!(
            ImageRef::split("chat:feature/x")
                .with_tag("feature-x")
                .to_string(),
            "chat:feature-x"
        );
    }
}
