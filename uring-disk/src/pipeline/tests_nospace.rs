//! A full disk or a file-size limit gives `WriteFailed` / `NoSpace`, never a panic.

use std::process::Command;

use super::*;

/// Submits every piece; returns (written, failed with NoSpace). Any other event fails.
fn write_expecting_failures(run: &Run, t: &Torrent) -> (usize, usize) {
    let count = t.hashes.len() as u32;
    let (mut written, mut no_space) = (0, 0);
    for piece in 0..count {
        let buf = filled(run, piece, piece_data(t, piece));
        run.pipeline.submit_piece(run.slot, piece, buf).unwrap();
        match run.events.recv_timeout(WAIT).unwrap() {
            DiskEvent::PieceWritten { piece: p, .. } => {
                assert_eq!(p, piece);
                written += 1;
            }
            DiskEvent::WriteFailed { piece: p, error } => {
                assert_eq!(p, piece);
                assert!(error.is_no_space(), "{error}");
                no_space += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(run.pipeline.queued_bytes(), 0);
    (written, no_space)
}

/// Unmounts the test filesystem even if the test fails.
struct Mount(PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_tmpfs_gives_no_space() {
    let dir = tempfile::tempdir().unwrap();
    // A full filesystem of our own; where it cannot be made the test fails with the reason
    // (CI runs as root): passing without it would have checked nothing.
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
        .arg(dir.path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run mount (util-linux): {e}"));
    assert!(
        mounted.status.success(),
        "cannot mount a 256 KiB tmpfs on {:?} ({}: {}); this test needs root (CAP_SYS_ADMIN)",
        dir.path(),
        mounted.status,
        String::from_utf8_lossy(&mounted.stderr)
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    );
    let _mount = Mount(dir.path().to_path_buf());
    let t = torrent(&[(1 << 20, false)], BLOCK * 4);
    match Storage::open(
        dir.path(),
        t.files.clone(),
        t.piece_length,
        StorageOptions::default(),
    ) {
        Err(e) => assert!(e.is_no_space(), "{e}"),
        Ok(_) => panic!("preallocating 1 MiB on a 256 KiB tmpfs succeeded"),
    }
    let sparse = StorageOptions {
        preallocate: false,
        direct_io: true,
    };
    for (i, config) in configs().into_iter().enumerate() {
        let root = dir.path().join(format!("b{i}"));
        let run = start(&t, &root, config, sparse);
        let (written, failed) = write_expecting_failures(&run, &t);
        assert!(
            written > 0 && failed > 0,
            "{written} written, {failed} failed"
        );
        drop(run);
        let _ = std::fs::remove_dir_all(&root);
    }
}

const CHILD_ENV: &str = "URING_DISK_FSIZE_CHILD";

#[test]
fn file_size_limit_gives_no_space() {
    let exe = std::env::current_exe().unwrap();
    let out = Command::new(exe)
        .args([
            "--exact",
            "pipeline::tests::nospace::fsize_child",
            "--ignored",
        ])
        .arg("--nocapture")
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{log}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(log.contains("1 passed"), "child did not run:\n{log}");
}

/// Runs in a child process: sets RLIMIT_FSIZE, which would otherwise limit the whole test run.
#[test]
#[ignore = "run by file_size_limit_gives_no_space in a child process"]
fn fsize_child() {
    if std::env::var_os(CHILD_ENV).is_none() {
        return;
    }
    let t = torrent(&[(1 << 20, false)], BLOCK * 4);
    let dir = tempfile::tempdir().unwrap();
    let runs: Vec<Run> = configs()
        .into_iter()
        .enumerate()
        .map(|(i, c)| {
            start(
                &t,
                &dir.path().join(format!("b{i}")),
                c,
                StorageOptions::default(),
            )
        })
        .collect();
    let limit = libc::rlimit {
        rlim_cur: 300_000,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscalls with a valid rlimit struct; ignoring SIGXFSZ makes writes past
    // the limit fail with EFBIG instead of killing the process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    for run in &runs {
        let (written, failed) = write_expecting_failures(run, &t);
        // 300_000 / 65_536: pieces 0..=3 fit, piece 4 straddles the limit, the rest fail.
        assert_eq!(
            (written, failed),
            (4, 12),
            "backend {:?}",
            run.pipeline.backend()
        );
    }
}
