//! The real tools the interop tests start, and the Debian package each comes from. A test that
//! needs one checks first and fails at once naming the package, instead of timing out later
//! with an unrelated error. Nothing here skips: a missing tool is a failure.

use std::process::{Command, Stdio};

use anyhow::{bail, Result};

use crate::proc::on_path;

/// A tool from a Debian package.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// libtorrent's Python bindings, for `/usr/bin/python3`.
    Libtorrent,
    Aria2,
    Transmission,
    Opentracker,
    Mktorrent,
}

impl Tool {
    /// The Debian 12 package that provides it.
    pub fn package(self) -> &'static str {
        match self {
            Tool::Libtorrent => "python3-libtorrent",
            Tool::Aria2 => "aria2",
            Tool::Transmission => "transmission-cli",
            Tool::Opentracker => "opentracker",
            Tool::Mktorrent => "mktorrent",
        }
    }

    fn present(self) -> bool {
        match self {
            Tool::Libtorrent => Command::new(crate::python())
                .args(["-c", "import libtorrent"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success()),
            Tool::Aria2 => on_path("aria2c"),
            Tool::Transmission => on_path("transmission-cli"),
            Tool::Opentracker => on_path("opentracker"),
            Tool::Mktorrent => on_path("mktorrent"),
        }
    }
}

/// `Ok` if `tool` can run here; else an error that names the package to install.
pub fn require(tool: Tool) -> Result<()> {
    if tool.present() {
        return Ok(());
    }
    bail!(
        "{tool:?} is needed by this test and is not installed: apt-get install {} \
         (or run `bash .ci/test`, which installs every tool the tests use)",
        tool.package()
    )
}
