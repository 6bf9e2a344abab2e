//! Path safety for file names that come from a torrent (or a peer's metadata).
//!
//! Invariant: a path accepted by [`safe_relative_path`] is relative and has only normal
//! components, so joining it to a download directory can never name anything outside it.

use std::fmt;
use std::path::PathBuf;

/// What is wrong with a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathProblem {
    /// No components at all.
    Empty,
    /// An empty component (`a//b`).
    EmptyComponent,
    /// A `.` component.
    Dot,
    /// A `..` component: would climb out of the download directory.
    DotDot,
    /// A component containing `/`.
    Separator,
    /// A component containing a NUL byte.
    Nul,
    /// The path starts at the root.
    Absolute,
}

impl fmt::Display for PathProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathProblem::Empty => "the path is empty",
            PathProblem::EmptyComponent => "it has an empty component",
            PathProblem::Dot => "it has a `.` component",
            PathProblem::DotDot => "it has a `..` component",
            PathProblem::Separator => "a component contains `/`",
            PathProblem::Nul => "a component contains a NUL byte",
            PathProblem::Absolute => "it is absolute",
        })
    }
}

/// A file path from outside that is unsafe to create below the download directory.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsafe file path {path:?}: {problem}")]
pub struct PathError {
    /// The offending path, components joined with `/`.
    pub path: String,
    /// What is wrong with it.
    pub problem: PathProblem,
}

/// Checks one path component.
pub fn check_component(c: &str) -> Result<(), PathProblem> {
    match c {
        "" => Err(PathProblem::EmptyComponent),
        "." => Err(PathProblem::Dot),
        ".." => Err(PathProblem::DotDot),
        _ if c.contains('\0') => Err(PathProblem::Nul),
        _ if c.contains('/') => Err(PathProblem::Separator),
        _ => Ok(()),
    }
}

/// Joins path components into a relative path, rejecting anything that could escape the
/// directory it is joined to: `..`, `.`, empty components, `/` or NUL inside a component, an
/// absolute path, or no components at all. The error names the whole offending path.
pub fn safe_relative_path<I, S>(components: I) -> Result<PathBuf, PathError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let parts: Vec<S> = components.into_iter().collect();
    let fail = |problem| PathError {
        path: parts
            .iter()
            .map(|p| p.as_ref())
            .collect::<Vec<_>>()
            .join("/"),
        problem,
    };
    let Some(first) = parts.first() else {
        return Err(fail(PathProblem::Empty));
    };
    if first.as_ref().starts_with('/') {
        return Err(fail(PathProblem::Absolute));
    }
    let mut out = PathBuf::new();
    for p in &parts {
        check_component(p.as_ref()).map_err(fail)?;
        out.push(p.as_ref());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_join() {
        let p = safe_relative_path(["dir", "sub", "file.txt"]).unwrap();
        assert_eq!(p, PathBuf::from("dir/sub/file.txt"));
        assert!(p.is_relative());
        // Dots inside names are fine.
        assert!(safe_relative_path(["..hidden", "a.b", "..."]).is_ok());
    }

    #[test]
    fn each_unsafe_path_is_rejected_and_named() {
        let cases: [(&[&str], PathProblem); 7] = [
            (&["a", "..", "b"], PathProblem::DotDot),
            (&["..", "etc"], PathProblem::DotDot),
            (&["a", ".", "b"], PathProblem::Dot),
            (&["a", "", "b"], PathProblem::EmptyComponent),
            (&["a", "b\0c"], PathProblem::Nul),
            (&["a", "b/c"], PathProblem::Separator),
            (&["/etc/passwd"], PathProblem::Absolute),
        ];
        for (parts, problem) in cases {
            let err = safe_relative_path(parts.iter()).unwrap_err();
            assert_eq!(err.problem, problem, "{parts:?}");
            assert_eq!(err.path, parts.join("/"));
            assert!(err.to_string().contains(&format!("{:?}", parts.join("/"))));
        }
        let empty: [&str; 0] = [];
        assert_eq!(
            safe_relative_path(empty).unwrap_err().problem,
            PathProblem::Empty
        );
    }
}
