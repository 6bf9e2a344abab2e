//! File selection flags of `download`: `--show-files`, `--select`, `--select-glob`,
//! `--sequential`. File indices are 0-based, as `--show-files` prints them.

use std::path::PathBuf;

use ringtorrent::files::{parse_selection, SelectionError};
use ringtorrent::metainfo::Info;
use ringtorrent::FilePriority;

/// The file selection flags (flattened into `download`).
#[derive(clap::Args, Debug, Default, Clone)]
pub struct SelectArgs {
    /// List the files of each torrent (`index  size  path`, indices 0-based) and exit.
    #[arg(long)]
    pub show_files: bool,
    /// Download only these files: 0-based indices as printed by --show-files, and inclusive
    /// ranges, e.g. `0,3-5`. Combines with --select-glob (a file chosen by either is
    /// downloaded). Other files are not created; bytes of theirs that share a piece with a
    /// selected file are kept in `<output>/.ringtorrent/<infohash>.parts`.
    #[arg(long, value_name = "LIST")]
    pub select: Option<String>,
    /// Download only files whose path inside the torrent (`dir/file`, `/`-separated) matches
    /// this pattern; `*` matches any run of characters (including `/`), `?` one character.
    /// Repeatable.
    #[arg(long, value_name = "PATTERN")]
    pub select_glob: Vec<String>,
    /// Download pieces in order (for streaming) instead of rarest first; every piece is still
    /// verified.
    #[arg(long)]
    pub sequential: bool,
}

/// A selection that does not fit a torrent (exit code 2).
#[derive(Debug)]
pub enum SelectError {
    Bad(SelectionError),
    NoMatch(String),
}

impl std::error::Error for SelectError {}

impl std::fmt::Display for SelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelectError::Bad(e) => write!(f, "--select: {e}"),
            SelectError::NoMatch(p) => write!(f, "--select-glob {p:?} matches no file"),
        }
    }
}

impl SelectArgs {
    /// True if the user chose files (otherwise every file is downloaded).
    pub fn is_selective(&self) -> bool {
        self.select.is_some() || !self.select_glob.is_empty()
    }

    /// Per-file priorities for `info`: `Normal` for chosen files, `Skip` for the rest; empty
    /// (everything `Normal`) without --select/--select-glob.
    pub fn priorities(&self, info: &Info) -> Result<Vec<FilePriority>, SelectError> {
        if !self.is_selective() {
            return Ok(Vec::new());
        }
        let n = info.files.len();
        let mut chosen = vec![false; n];
        if let Some(spec) = &self.select {
            for i in parse_selection(spec, n).map_err(SelectError::Bad)? {
                chosen[i] = true;
            }
        }
        for pat in &self.select_glob {
            let mut any = false;
            for (i, c) in chosen.iter_mut().enumerate() {
                if glob_match(pat.as_bytes(), info.display_path(i).as_bytes()) {
                    *c = true;
                    any = true;
                }
            }
            if !any {
                return Err(SelectError::NoMatch(pat.clone()));
            }
        }
        Ok(chosen
            .into_iter()
            .map(|c| {
                if c {
                    FilePriority::Normal
                } else {
                    FilePriority::Skip
                }
            })
            .collect())
    }
}

/// Handles the selection flags before the engine starts: prints the file lists for
/// `--show-files` (exit code 0), and checks --select/--select-glob against every torrent so a
/// bad one ends the command with code 2 before anything is created. `None`: go on.
pub fn preflight(torrents: &[PathBuf], sel: &SelectArgs) -> anyhow::Result<Option<i32>> {
    if !sel.show_files && !sel.is_selective() {
        return Ok(None);
    }
    for path in torrents {
        let meta = crate::info::load_torrent(path)?;
        if sel.show_files {
            if torrents.len() > 1 {
                println!("{}:", path.display());
            }
            print!("{}", file_list(&meta.info));
        } else if let Err(e) = sel.priorities(&meta.info) {
            eprintln!("error: {}: {e}", path.display());
            return Ok(Some(2));
        }
    }
    Ok(sel.show_files.then_some(0))
}

/// The file list of a torrent: `index  size  path` per line (padding files omitted).
pub fn file_list(info: &Info) -> String {
    let width = info.files.len().saturating_sub(1).to_string().len();
    let mut out = String::new();
    for (i, f) in info.files.iter().enumerate() {
        if f.padding {
            continue;
        }
        let path: PathBuf = info.file_path(i);
        out.push_str(&format!(
            "{i:>width$}  {:>14}  {}\n",
            f.length,
            path.display()
        ));
    }
    out
}

/// Shell-style match of the whole `text`: `*` any run (also `/`), `?` one byte.
pub fn glob_match(pat: &[u8], text: &[u8]) -> bool {
    // Iterative with one backtrack point: linear in practice, never exponential.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pat.get(p) {
            Some(b'*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == b'?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pat[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match(b"*.iso", b"dir/disk.iso"));
        assert!(glob_match(b"*", b""));
        assert!(glob_match(b"a?c", b"abc"));
        assert!(glob_match(b"d*/*.txt", b"dir/sub/x.txt"));
        assert!(!glob_match(b"*.iso", b"disk.iso.part"));
        assert!(!glob_match(b"a?c", b"ac"));
        assert!(!glob_match(b"", b"x"));
        assert!(glob_match(b"**a**b", b"xxaxxb"));
    }
}
