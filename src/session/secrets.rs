//! Secrets that rotate: `${file:PATH}` in header values, auth payloads and
//! credentials stands for the file's content (without its final newline),
//! read again for every connection attempt (Kubernetes projected tokens
//! rotate). The driver reads the files off the loop; the core only
//! substitutes, and never logs the result.

use std::path::{Path, PathBuf};

const OPEN: &str = "${file:";

/// The paths a template refers to.
pub fn file_refs(template: &str) -> impl Iterator<Item = &str> {
    template
        .split(OPEN)
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(path, _)| path))
}

/// For targets without secret files.
pub static NO_SECRETS: SecretFiles = SecretFiles::EMPTY;

/// File contents by path, read for one connection attempt.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SecretFiles(Vec<(PathBuf, String)>);

impl SecretFiles {
    /// None at all: templates without files expand to themselves.
    pub const EMPTY: SecretFiles = SecretFiles(Vec::new());

    /// Files as read (a final newline is not part of a secret).
    pub fn new(contents: Vec<(PathBuf, String)>) -> SecretFiles {
        SecretFiles(contents.into_iter().map(|(p, t)| (p, trim_newline(t))).collect())
    }

    /// `template` with every `${file:PATH}` replaced by that file's content;
    /// a file not read expands to nothing.
    pub fn expand(&self, template: &str) -> String {
        if !template.contains(OPEN) {
            return template.to_string();
        }
        let mut out = String::with_capacity(template.len());
        let mut rest = template;
        while let Some(start) = rest.find(OPEN) {
            out.push_str(&rest[..start]);
            let after = &rest[start + OPEN.len()..];
            let Some((path, tail)) = after.split_once('}') else {
                out.push_str(&rest[start..]);
                return out;
            };
            if let Some((_, content)) = self.0.iter().find(|(p, _)| p == Path::new(path)) {
                out.push_str(content);
            }
            rest = tail;
        }
        out.push_str(rest);
        out
    }
}

fn trim_newline(mut text: String) -> String {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_references_are_found_and_replaced_by_content_without_the_final_newline() {
        let t = "Bearer ${file:/run/a}, ${file:/run/b}!";
        assert_eq!(file_refs(t).collect::<Vec<_>>(), ["/run/a", "/run/b"]);
        let files = SecretFiles::new(vec![("/run/a".into(), "one".into()), ("/run/b".into(), "two".into())]);
        assert_eq!(files.expand(t), "Bearer one, two!");
        assert_eq!(SecretFiles::EMPTY.expand("plain"), "plain");
        assert_eq!(SecretFiles::EMPTY.expand("${file:/x}y"), "y");
        let crlf = SecretFiles::new(vec![("/t".into(), "tok\r\n".into())]);
        assert_eq!(crlf.expand("${file:/t}"), "tok");
    }
}
