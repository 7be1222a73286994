//! Starting, feeding and restarting the admin's gateway process (see
//! `convention/gateway/mod.rs` for the process, `convention/handle.rs` for the handle and
//! its restart policy).
//!
//! The gateway is started like a host: through the spawner (so that it is the admin's
//! child, dies with it, and copies none of the admin's fds), with its stderr piped into the
//! admin's log. Its control socket is registered under the `CONVENTION` token.

use mio::{net::UnixStream, Interest, Token};
use nix::unistd::Pid;

use super::{logs, process_role, Admin, CONVENTION};

/// The gateway's process title.
const GATEWAY_ARGV0: &str = "greenroom-gateway";

impl Admin {
    /// Starts the gateway if one is due (none runs, and the backoff after the last one's
    /// death is over).
    pub(super) fn start_gateway_if_due(&mut self) {
        let due = self
            .convention
            .as_ref()
            .is_some_and(|handle| handle.start_due(std::time::Instant::now()));
        if !due {
            return;
        }
        if let Err(why) = self.start_gateway() {
            if let Some(handle) = self.convention.as_mut() {
                handle.start_failed(&why);
            }
        }
    }

    fn start_gateway(&mut self) -> Result<(), String> {
        let Some(handle) = self.convention.as_ref() else {
            return Ok(());
        };
        let [tcp, unix] = handle.listeners();
        let (admin_end, gateway_end) =
            std::os::unix::net::UnixStream::pair().map_err(|e| format!("cannot create a socket pair: {e}"))?;
        let (gateway_stderr, log_end) =
            logs::stderr_pipe().map_err(|e| format!("cannot create a pipe for the gateway's stderr: {e}"))?;
        // Before the process exists: after, a failure here would leave it running unowned.
        admin_end
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make the gateway's control socket non-blocking: {e}"))?;
        let pid = super::run_host_binary(
            &mut self.spawner,
            &self.host_exe,
            process_role::Role::Gateway,
            GATEWAY_ARGV0,
            &greenroom_protocol::ResourceLimits::default(),
            &gateway_stderr,
            [&gateway_end, &tcp, &unix],
        )?;
        drop(gateway_end);
        drop(gateway_stderr);
        let log_token = Token(self.next_token);
        self.next_token += 1;
        let mut log_pipe = logs::LogPipe::for_process(log_end, format!(" process=gateway pid={}", pid.as_raw()));
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut log_pipe.rx, log_token, Interest::READABLE)
        {
            tracing::error!(error = %e, "cannot watch the gateway's stderr; its lines are lost");
        } else {
            self.log_pipes.insert(log_token, log_pipe);
        }
        let Some(handle) = self.convention.as_mut() else {
            return Ok(());
        };
        handle.started(pid, UnixStream::from_std(admin_end));
        if let Some(control) = handle.control_mut() {
            if let Err(e) =
                self.poll
                    .registry()
                    .register(&mut control.stream, CONVENTION, Interest::READABLE | Interest::WRITABLE)
            {
                tracing::error!(error = %e, "cannot watch the gateway's control socket; killing it");
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
        handle.flush();
        Ok(())
    }

    /// The gateway's control socket is ready.
    pub(super) fn on_gateway_ready(&mut self, readable: bool) {
        let Some(handle) = self.convention.as_mut() else { return };
        handle.flush();
        if readable && !handle.read() {
            // Its end of the socket is closed: the process is going (reaping says how).
            if let Some(control) = handle.control_mut() {
                let _ = self.poll.registry().deregister(&mut control.stream);
            }
        }
        self.on_convention_events();
    }

    /// Whether `pid` was the gateway's; if so, its death is handled.
    pub(super) fn reap_gateway(&mut self, pid: Pid, status: &nix::sys::wait::WaitStatus) -> bool {
        let Some(handle) = self.convention.as_mut().filter(|h| h.is_gateway(pid)) else {
            return false;
        };
        if let Some(control) = handle.control_mut() {
            let _ = self.poll.registry().deregister(&mut control.stream);
        }
        handle.exited(&format!("{status:?}"));
        self.on_convention_events();
        true
    }

    /// Writes what waits for the gateway, and handles what it (or a failed send) brought.
    pub(super) fn tend_gateway(&mut self) {
        self.start_gateway_if_due();
        let Some(handle) = self.convention.as_mut() else { return };
        if let Some(pid) = handle.hung(std::time::Instant::now()) {
            tracing::error!(pid = pid.as_raw(), silent = ?crate::convention::handle::GATEWAY_SILENCE,
                "the convention gateway does not answer; killing it (another starts when it is reaped)");
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        }
        handle.flush();
        if handle.has_events() {
            self.on_convention_events();
        }
    }
}
