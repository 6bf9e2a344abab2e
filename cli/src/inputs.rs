//! The inputs of `download`: torrent paths and magnet links from the command line and from
//! `-i FILE` lists (aria2's format, where users already have habits).
//!
//! A list holds one torrent path or magnet link a line; `#` starts a comment line; blank lines
//! are skipped. Indented lines after an entry set options for it alone: `dir=PATH`,
//! `select=LIST` (as `--select`), `seed-ratio=R`, `max-download-rate=N` (as the flag, e.g.
//! `10M`). A line that cannot be understood makes its entry fail with the line's number; the
//! other entries are not affected.

use std::path::{Path, PathBuf};

/// Longest list read (a list is text an operator wrote: 16 MiB is far beyond any).
pub const MAX_LIST_BYTES: u64 = 16 << 20;

/// Options one list entry sets for itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EntryOptions {
    pub dir: Option<PathBuf>,
    pub select: Option<String>,
    pub seed_ratio: Option<f64>,
    pub max_download_rate: Option<u64>,
}

/// One torrent to download, and where it was given.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// `argument 2` or `list.txt:7`, for messages.
    pub origin: String,
    /// The path or magnet link as given.
    pub input: String,
    pub options: EntryOptions,
    /// Why this entry cannot be used (a bad option line), reported and skipped.
    pub error: Option<String>,
}

impl Entry {
    fn new(origin: String, input: String) -> Entry {
        Entry {
            origin,
            input,
            options: EntryOptions::default(),
            error: None,
        }
    }

    /// A short name for tables: the file name of a path, the `dn` (or the hash) of a magnet.
    pub fn label(&self) -> String {
        const MAX: usize = 40;
        let name = if crate::magnet::is_magnet(&self.input) {
            let query = self.input.split_once('?').map_or("", |(_, q)| q);
            let field = |key: &str| {
                query
                    .split('&')
                    .find_map(|kv| kv.strip_prefix(key))
                    .map(str::to_string)
            };
            field("dn=")
                .or_else(|| field("xt=urn:btih:"))
                .unwrap_or_else(|| "magnet".into())
        } else {
            Path::new(&self.input)
                .file_name()
                .map_or_else(|| self.input.clone(), |n| n.to_string_lossy().into_owned())
        };
        match name.char_indices().nth(MAX) {
            Some((cut, _)) => format!("{}...", &name[..cut]),
            None => name,
        }
    }
}

/// A list line that belongs to no entry (reported; the list is still used).
#[derive(Debug, Clone, PartialEq)]
pub struct Stray {
    pub origin: String,
    pub message: String,
}

/// Entries in the order given: the command line's, then each list's.
pub fn from_args(args: &[String]) -> Vec<Entry> {
    args.iter()
        .enumerate()
        .map(|(i, a)| Entry::new(format!("argument {}", i + 1), a.clone()))
        .collect()
}

/// Reads a list from `path` (`-` for stdin).
pub fn read_list(path: &Path) -> anyhow::Result<(Vec<Entry>, Vec<Stray>)> {
    use anyhow::Context as _;
    use std::io::Read as _;
    let mut text = String::new();
    let name = if path == Path::new("-") {
        std::io::stdin()
            .take(MAX_LIST_BYTES)
            .read_to_string(&mut text)
            .context("cannot read the input list from stdin")?;
        "stdin".to_string()
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_LIST_BYTES).read_to_string(&mut text))
            .with_context(|| format!("cannot read the input list {}", path.display()))?;
        path.display().to_string()
    };
    Ok(parse_list(&name, &text))
}

/// Parses a list's text; `name` labels the lines in messages.
pub fn parse_list(name: &str, text: &str) -> (Vec<Entry>, Vec<Stray>) {
    let mut entries: Vec<Entry> = Vec::new();
    let mut strays = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let origin = format!("{name}:{}", i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let indented = raw.starts_with(' ') || raw.starts_with('\t');
        if !indented {
            entries.push(Entry::new(origin, line.to_string()));
            continue;
        }
        let Some(entry) = entries.last_mut() else {
            strays.push(Stray {
                origin,
                message: format!("option {line:?} before any torrent"),
            });
            continue;
        };
        if let Err(e) = apply_option(&mut entry.options, line) {
            // The first bad line is the one reported.
            if entry.error.is_none() {
                entry.error = Some(format!("{e} (line {})", i + 1));
            }
        }
    }
    (entries, strays)
}

/// Applies one `key=value` option line.
fn apply_option(o: &mut EntryOptions, line: &str) -> Result<(), String> {
    let (key, value) = line
        .split_once('=')
        .map(|(k, v)| (k.trim(), v.trim()))
        .ok_or_else(|| format!("expected key=value, got {line:?}"))?;
    if value.is_empty() {
        return Err(format!("{key}: empty value"));
    }
    match key {
        "dir" => o.dir = Some(PathBuf::from(value)),
        "select" => o.select = Some(value.to_string()),
        "seed-ratio" => {
            let r: f64 = value
                .parse()
                .map_err(|_| format!("seed-ratio: {value:?} is not a number"))?;
            if !(r.is_finite() && r >= 0.0) {
                return Err(format!("seed-ratio: {value:?} must be 0 or more"));
            }
            o.seed_ratio = Some(r);
        }
        "max-download-rate" => {
            o.max_download_rate = Some(
                crate::util::parse_size(value).map_err(|e| format!("max-download-rate: {e}"))?,
            )
        }
        other => {
            return Err(format!(
                "unknown option {other:?} (known: dir, select, seed-ratio, max-download-rate)"
            ))
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_comments_and_options() {
        let text = "# a list\n\na.torrent\n  dir=/data/a\n\tselect=0,2-3\n  seed-ratio=1.5\n  max-download-rate=10M\nmagnet:?xt=urn:btih:0123456789abcdef0123456789abcdef01234567\n   \n# done\n";
        let (entries, strays) = parse_list("l.txt", text);
        assert!(strays.is_empty());
        assert_eq!(entries.len(), 2);
        let a = &entries[0];
        assert_eq!(
            (a.origin.as_str(), a.input.as_str()),
            ("l.txt:3", "a.torrent")
        );
        assert_eq!(
            a.options,
            EntryOptions {
                dir: Some("/data/a".into()),
                select: Some("0,2-3".into()),
                seed_ratio: Some(1.5),
                max_download_rate: Some(10 << 20),
            }
        );
        assert_eq!(a.error, None);
        assert_eq!(entries[1].origin, "l.txt:8");
        assert!(entries[1].input.starts_with("magnet:?"));
        assert_eq!(entries[1].options, EntryOptions::default());
    }

    #[test]
    fn bad_option_lines_fail_their_entry_only() {
        let text = "a.torrent\n  colour=blue\n  seed-ratio=x\nb.torrent\n  seed-ratio=-1\nc.torrent\n  dir\n  dir=\nd.torrent\n  max-download-rate=lots\ne.torrent\n";
        let (entries, strays) = parse_list("l", text);
        assert!(strays.is_empty());
        let errors: Vec<Option<&str>> = entries.iter().map(|e| e.error.as_deref()).collect();
        let starts = |i: usize, text: &str, line: &str| {
            let e = errors[i].unwrap();
            assert!(e.starts_with(text) && e.ends_with(line), "{e}");
        };
        starts(0, "unknown option \"colour\"", "(line 2)");
        starts(1, "seed-ratio", "(line 5)");
        starts(2, "expected key=value", "(line 7)");
        starts(3, "max-download-rate", "(line 10)");
        assert_eq!(errors[4], None);
        assert_eq!(entries[0].origin, "l:1");
    }

    #[test]
    fn labels_are_short_names() {
        let (entries, _) = parse_list(
            "l",
            "/data/torrents/x.torrent\nmagnet:?xt=urn:btih:00ff&dn=ubuntu.iso\nmagnet:?xt=urn:btih:00ff\nmagnet:?tr=x\n",
        );
        let labels: Vec<String> = entries.iter().map(Entry::label).collect();
        assert_eq!(labels, ["x.torrent", "ubuntu.iso", "00ff", "magnet"]);
    }

    #[test]
    fn options_before_any_entry_are_strays() {
        let (entries, strays) = parse_list("l", "  dir=/x\na.torrent\n");
        assert_eq!(entries.len(), 1);
        assert_eq!(
            strays,
            vec![Stray {
                origin: "l:1".into(),
                message: "option \"dir=/x\" before any torrent".into()
            }]
        );
    }

    #[test]
    fn arguments_are_numbered_from_one() {
        let e = from_args(&["x.torrent".into(), "magnet:?xt=y".into()]);
        assert_eq!(e[0].origin, "argument 1");
        assert_eq!(e[1].origin, "argument 2");
        assert_eq!(e[1].input, "magnet:?xt=y");
    }

    #[test]
    fn lists_are_read_from_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("list");
        std::fs::write(&p, "a.torrent\n").unwrap();
        let (e, _) = read_list(&p).unwrap();
        assert_eq!(e[0].origin, format!("{}:1", p.display()));
        let missing = read_list(&dir.path().join("nope")).unwrap_err();
        assert!(format!("{missing:#}").contains("cannot read the input list"));
    }
}
