//! A stage's cache key: one BLAKE3 hash of everything its result may
//! depend on. Two runs of a stage with the same key may share a result.
//!
//! What goes in: the image's content id or digest, the script, the env
//! (secret values included, hashed with the rest, never stored), the
//! matrix values, the declared artifacts, the digest of the files its
//! `inputs` match, and the keys of the stages it comes after. slipway's
//! own `SLIPWAY_*` variables (the commit, the branch, ...) change from run
//! to run: one counts only when the script names it.

use indexmap::IndexMap;

use crate::run::backend::EnvValue;

/// A stage's cache key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub blake3::Hash);

impl Key {
    /// The key as 64 hex digits.
    pub fn hex(&self) -> String {
        self.0.to_hex().to_string()
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.hex())
    }
}

/// What a stage's key is made of.
#[derive(Debug)]
pub struct Parts<'a> {
    /// The image's content id (`sha256:...`) or digest.
    pub image: &'a str,
    pub script: &'a str,
    pub env: &'a IndexMap<String, EnvValue>,
    pub matrix: &'a IndexMap<String, String>,
    pub artifacts: &'a [String],
    /// The digest of the files `inputs` match (see `index::digest`).
    pub inputs: blake3::Hash,
    /// The keys of the stages it comes after, by stage name.
    pub after: &'a [(String, Key)],
}

/// Separates the parts (and their items) so that no two different sets of
/// parts hash the same bytes.
struct Writer(blake3::Hasher);

impl Writer {
    fn field(&mut self, name: &str, value: &[u8]) {
        self.0.update(name.as_bytes());
        self.0.update(&(value.len() as u64).to_le_bytes());
        self.0.update(value);
    }
}

/// The key of a stage made of `parts`.
pub fn key(parts: &Parts<'_>) -> Key {
    let mut w = Writer(blake3::Hasher::new_derive_key("slipway stage cache key v1"));
    w.field("image", parts.image.as_bytes());
    w.field("script", parts.script.as_bytes());
    let mut env: Vec<(&String, &EnvValue)> = parts
        .env
        .iter()
        .filter(|(k, _)| !k.starts_with("SLIPWAY_") || names(parts.script, k))
        .collect();
    env.sort_by(|a, b| a.0.cmp(b.0));
    for (k, v) in env {
        w.field("env", k.as_bytes());
        match v {
            EnvValue::Plain(v) => w.field("plain", v.as_bytes()),
            EnvValue::Secret(v) => w.field("secret", blake3::hash(v.as_bytes()).as_bytes()),
        }
    }
    let mut matrix: Vec<(&String, &String)> = parts.matrix.iter().collect();
    matrix.sort();
    for (k, v) in matrix {
        w.field("matrix", k.as_bytes());
        w.field("value", v.as_bytes());
    }
    for a in parts.artifacts {
        w.field("artifact", a.as_bytes());
    }
    w.field("inputs", parts.inputs.as_bytes());
    let mut after: Vec<&(String, Key)> = parts.after.iter().collect();
    after.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, k) in after {
        w.field("after", name.as_bytes());
        w.field("key", k.0.as_bytes());
    }
    Key(w.0.finalize())
}

/// Whether `script` names the variable `name` (`$NAME` or `${NAME...}`).
fn names(script: &str, name: &str) -> bool {
    script.match_indices(name).any(|(at, _)| {
        let before = &script[..at];
        let after = script[at + name.len()..].chars().next();
        let ends = after.is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_'));
        ends && (before.ends_with('$') || before.ends_with("${"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Stage {
        image: String,
        script: String,
        env: IndexMap<String, EnvValue>,
        matrix: IndexMap<String, String>,
        artifacts: Vec<String>,
        inputs: blake3::Hash,
        after: Vec<(String, Key)>,
    }

    impl Stage {
        fn key(&self) -> Key {
            key(&Parts {
                image: &self.image,
                script: &self.script,
                env: &self.env,
                matrix: &self.matrix,
                artifacts: &self.artifacts,
                inputs: self.inputs,
                after: &self.after,
            })
        }
    }

    fn stage() -> Stage {
        let mut env = IndexMap::new();
        env.insert("NODE_ENV".into(), EnvValue::Plain("test".into()));
        env.insert("TOKEN".into(), EnvValue::Secret("hunter2".into()));
        env.insert("SLIPWAY_GIT_SHA".into(), EnvValue::Plain("0123abc".into()));
        let mut matrix = IndexMap::new();
        matrix.insert("NODE".into(), "20".into());
        Stage {
            image: "sha256:aaaa".into(),
            script: "npm test".into(),
            env,
            matrix,
            artifacts: vec!["coverage/".into()],
            inputs: blake3::hash(b"inputs"),
            after: vec![("install".into(), Key(blake3::hash(b"install")))],
        }
    }

    #[test]
    fn every_part_changes_the_key() {
        let base = stage().key();
        assert_eq!(stage().key(), base, "the same parts, the same key");
        type Change = Box<dyn Fn(&mut Stage)>;
        let changes: Vec<(&str, Change)> = vec![
            ("image", Box::new(|s| s.image = "sha256:bbbb".into())),
            ("script", Box::new(|s| s.script = "npm test -- --ci".into())),
            (
                "env value",
                Box::new(|s| {
                    s.env
                        .insert("NODE_ENV".into(), EnvValue::Plain("ci".into()));
                }),
            ),
            (
                "secret value",
                Box::new(|s| {
                    s.env
                        .insert("TOKEN".into(), EnvValue::Secret("hunter3".into()));
                }),
            ),
            (
                "a new env name",
                Box::new(|s| {
                    s.env.insert("CI".into(), EnvValue::Plain("1".into()));
                }),
            ),
            (
                "matrix value",
                Box::new(|s| {
                    s.matrix.insert("NODE".into(), "18".into());
                }),
            ),
            ("artifacts", Box::new(|s| s.artifacts.push("dist/".into()))),
            ("inputs", Box::new(|s| s.inputs = blake3::hash(b"other"))),
            (
                "a dependency's key",
                Box::new(|s| s.after[0].1 = Key(blake3::hash(b"install, changed"))),
            ),
        ];
        for (what, change) in changes {
            let mut s = stage();
            change(&mut s);
            assert_ne!(s.key(), base, "{what} did not change the key");
        }
    }

    #[test]
    fn order_and_slipways_own_variables_do_not_unless_the_script_names_them() {
        let base = stage().key();
        // Env and dependencies in another order: the same key.
        let mut s = stage();
        s.env.reverse();
        s.after
            .insert(0, ("lint".into(), Key(blake3::hash(b"lint"))));
        let mut t = stage();
        t.after.push(("lint".into(), Key(blake3::hash(b"lint"))));
        assert_eq!(s.key(), t.key());
        // Another commit: the same key, unless the script uses it.
        let mut s = stage();
        s.env
            .insert("SLIPWAY_GIT_SHA".into(), EnvValue::Plain("4567def".into()));
        assert_eq!(s.key(), base);
        let mut named = stage();
        named.script = "echo built from ${SLIPWAY_GIT_SHA}".into();
        let mut other = stage();
        other.script = named.script.clone();
        other
            .env
            .insert("SLIPWAY_GIT_SHA".into(), EnvValue::Plain("4567def".into()));
        assert_ne!(named.key(), other.key());
    }

    #[test]
    fn a_script_names_a_variable_only_as_a_whole_word_after_a_dollar() {
        assert!(names("echo $SLIPWAY_GIT_SHA", "SLIPWAY_GIT_SHA"));
        assert!(names("echo ${SLIPWAY_GIT_SHA:-none}", "SLIPWAY_GIT_SHA"));
        assert!(!names("echo $SLIPWAY_GIT_SHA_SHORT", "SLIPWAY_GIT_SHA"));
        assert!(!names("echo SLIPWAY_GIT_SHA", "SLIPWAY_GIT_SHA"));
    }
}
