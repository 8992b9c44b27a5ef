//! The watchdog that stops a server and removes its directory once the test binary is
//! gone (also when it was killed).

use crate::*;

/// A shell in its own process group (a Ctrl-C of the test run does not reach it) that runs
/// `cleanup` once the test binary has exited, however it ended. Killed on drop.
pub(crate) struct Watchdog(pub(crate) Child);

impl Watchdog {
    pub(crate) fn start(cleanup: &str) -> Watchdog {
        use std::os::unix::process::CommandExt;
        let script = format!(
            "while kill -0 {} 2>/dev/null; do sleep 1; done; {cleanup}",
            std::process::id()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the watchdog shell");
        Watchdog(child)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `sh` commands that kill process `pid` if it still runs in `cwd` (a pid may have been
/// reused by the time a watchdog runs), then remove `dir`.
pub(crate) fn kill_and_remove(pid: u32, cwd: &Path, dir: &Path) -> String {
    let cwd = quoted(&cwd.display().to_string());
    let dir = quoted(&dir.display().to_string());
    format!(
        r#"[ "$(readlink /proc/{pid}/cwd)" = {cwd} ] && kill -9 {pid}; sleep 0.2; rm -rf {dir}"#
    )
}
