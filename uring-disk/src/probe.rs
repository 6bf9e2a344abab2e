//! Can this process use io_uring? Checked once when the pipeline starts.

use io_uring::{opcode, IoUring, Probe};

use crate::error::ProbeError;

/// Environment variable that forces the blocking fallback (for tests): `RINGTORRENT_NO_URING=1`.
pub const NO_URING_ENV: &str = "RINGTORRENT_NO_URING";

/// `Ok` if io_uring is usable here with the operations the pipeline needs.
///
/// Refuses when `RINGTORRENT_NO_URING=1` is set, when `kernel.io_uring_disabled` is not 0, when
/// `io_uring_setup` fails (ENOSYS on old kernels, EPERM under seccomp or in containers), or when
/// the kernel lacks read, write or fsync.
pub fn uring_available() -> Result<(), ProbeError> {
    if std::env::var_os(NO_URING_ENV).is_some_and(|v| v == "1") {
        return Err(ProbeError::DisabledByEnv);
    }
    if let Ok(s) = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        match s.trim().parse::<u32>() {
            Ok(0) | Err(_) => {}
            Ok(v) => return Err(ProbeError::DisabledBySysctl(v)),
        }
    }
    let ring = IoUring::new(4).map_err(ProbeError::Setup)?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(ProbeError::Setup)?;
    for (code, name) in [
        (opcode::Read::CODE, "read"),
        (opcode::Write::CODE, "write"),
        (opcode::Fsync::CODE, "fsync"),
    ] {
        if !probe.is_supported(code) {
            return Err(ProbeError::MissingOp(name));
        }
    }
    Ok(())
}
