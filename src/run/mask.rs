//! Masking secret values wherever text leaves a run: log lines, messages,
//! events. A value is replaced wherever it appears, also inside a longer line.

/// The secret values of one run, longest first so that a value containing
/// another is masked whole.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    values: Vec<String>,
}

pub const MASK: &str = crate::plan::MASK;

impl Masker {
    pub fn new(values: impl IntoIterator<Item = String>) -> Self {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Self { values }
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_values_inside_longer_lines() {
        let m = Masker::new([
            "s3cret".to_string(),
            "s3cret-and-more".to_string(),
            String::new(),
        ]);
        assert_eq!(m.mask("token=s3cret;"), "token=***;");
        assert_eq!(m.mask("s3cret-and-more"), "***");
        assert_eq!(m.mask("nothing here"), "nothing here");
    }
}
