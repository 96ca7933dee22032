//! Declarative exclusion patterns: globs over `/`-separated relative paths.

use glob::{MatchOptions, Pattern};

const OPTIONS: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// A set of glob patterns (`*` and `?` stay within one component, `**` spans
/// any number); a path is excluded when any pattern matches it whole.
#[derive(Debug, Clone, Default)]
pub struct Patterns {
    patterns: Vec<Pattern>,
}

impl Patterns {
    /// Parse patterns; a bad one is an error naming it.
    pub fn new<S: AsRef<str>>(sources: &[S]) -> Result<Self, String> {
        let patterns = sources
            .iter()
            .map(|s| {
                let s = s.as_ref().trim_end_matches('/');
                Pattern::new(s).map_err(|e| format!("exclude pattern {s:?}: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Patterns { patterns })
    }

    /// A pattern that matches exactly `rel` (its `*`, `?` and `[` taken as
    /// themselves).
    pub fn literal(rel: &str) -> String {
        Pattern::escape(rel)
    }

    /// Whether no pattern is set.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel` matches any pattern.
    pub fn matches(&self, rel: &str) -> bool {
        self.patterns.iter().any(|p| p.matches_with(rel, OPTIONS))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_respect_components() {
        let p = Patterns::new(&["projects/*", "**/*.tmp", "cache"]).unwrap();
        assert!(p.matches("projects/abc"));
        assert!(!p.matches("projects/abc/def"));
        assert!(p.matches("a/b/c.tmp"));
        assert!(p.matches("c.tmp"));
        assert!(p.matches("cache"));
        assert!(!p.matches("cache2"));
        assert!(!p.matches("x/cache"));
    }

    #[test]
    fn bad_pattern_is_an_error() {
        let err = Patterns::new(&["a[b"]).unwrap_err();
        assert!(err.contains("a[b"), "{err}");
    }
}
