/// Which cases run: a case runs when it matches some `focus` (or there is none) and no `skip`.
/// Both match substrings of case names.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub focus: Vec<String>,
    pub skip: Vec<String>,
}

impl Selection {
    pub fn selects(&self, name: &str) -> bool {
        (self.focus.is_empty() || self.focus.iter().any(|f| name.contains(f.as_str())))
            && !self.skip.iter().any(|s| name.contains(s.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selection_by_substring() {
        let all = Selection::default();
        assert!(all.selects("runtime/version"));
        let focus = Selection { focus: vec!["version".into()], skip: vec![] };
        assert!(focus.selects("runtime/version") && !focus.selects("runtime/status"));
        let skip = Selection { focus: vec![], skip: vec!["status".into()] };
        assert!(skip.selects("runtime/version") && !skip.selects("runtime/status"));
        let both = Selection { focus: vec!["image/".into()], skip: vec!["user".into()] };
        assert!(both.selects("image/pull-by-tag") && !both.selects("image/user-uid"));
        assert!(!both.selects("runtime/version"));
    }
}
