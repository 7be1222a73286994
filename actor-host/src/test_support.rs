//! Process-base systems inside `cargo test`: the entry point of a binary whose `main` is not
//! the user's.
//!
//! Greenroom starts the admin and every host by re-running the client's executable. In a test
//! binary `main` is libtest's, so `greenroom_host::init` is never reached first: the re-run
//! binary would run the test suite again. [`test_support!`](crate::test_support) registers a
//! function in the ELF `.init_array`, which the loader runs before `main`: as an admin or a
//! host it runs that role and exits, so libtest never starts; as a client it records the
//! registry and the fact that this executable can serve as its own host, and returns.
//!
//! Running before `main` means std's runtime set-up has not happened. What of it the roles
//! rely on is done here (see `prepare_process`); what is left out changes no behaviour a
//! system depends on (a stack overflow is a plain `SIGSEGV` rather than std's message and
//! `SIGABRT`; the thread is unnamed).

use std::{
    io::Write,
    panic::{catch_unwind, AssertUnwindSafe},
    sync::atomic::{AtomicBool, Ordering},
};

use greenroom::{
    process_role::{self, Entry, Role},
    Registry,
};

/// The exit status of a process whose before-`main` entry failed (a panic while building the
/// registry, or the macro invoked twice): the host's "internal failure".
const EXIT_ENTRY_FAILED: i32 = 70;

/// Makes this test binary (or any binary whose `main` is not yours) its own admin and host
/// executable, so that its tests can start process-base systems.
///
/// Invoke it once per test binary, as an item: in an integration test file, or in a
/// `#[cfg(test)]` module of a library (for its unit tests). The argument is the expression
/// that builds the [`Registry`], evaluated once per process before `main`. Without it, a test
/// that starts a process-base system with the default host executable gets
/// `Error::NoHostEntry`, and nothing is started.
///
/// What it does, by the role the process was started in (`GREENROOM_ROLE`):
///
/// | role | before `main` |
/// |---|---|
/// | client (the test run itself) | records the registry, as [`crate::init`] does (the simple base needs no `SystemConfig::registry`), and returns to libtest |
/// | admin | runs the admin and exits; libtest never starts |
/// | host | runs the actor host and exits; libtest never starts |
///
/// Tests may run in parallel, each with a system of its own; a system stops when its
/// `ActorSystem` is dropped, and if the test binary dies first its admins notice and take
/// their hosts with them.
///
/// Keep the registry expression free of side effects beyond building the registry: it runs
/// before `main`, in every process of every system. A panic in it, or a second invocation in
/// the same binary, ends the process with a message and status 70.
///
/// ```no_run
/// use greenroom::{Actor, ActorResult, ActorSystem, Address, AnyMessage, Context, Registry};
///
/// #[derive(Default)]
/// struct Echo;
///
/// impl Actor for Echo {
///     fn receive(&mut self, ctx: &mut Context<'_>, msg: &AnyMessage, sender: Address) -> ActorResult {
///         if let Some(text) = msg.downcast::<String>() {
///             ctx.send(sender, text)?;
///         }
///         Ok(())
///     }
/// }
///
/// greenroom_host::test_support!(Registry::new().register::<Echo>());
///
/// #[test]
/// fn echo_answers_from_its_own_process() {
///     let system = ActorSystem::start().unwrap();
///     let echo = system.create_actor::<Echo>().unwrap();
///     let reply: String = system.ask(echo, "hi".to_string(), std::time::Duration::from_secs(5)).unwrap();
///     assert_eq!(reply, "hi");
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! test_support {
    ($registry:expr $(,)?) => {
        const _: () = {
            extern "C" fn greenroom_test_support_entry() {
                $crate::test_support::before_main(|| -> $crate::__Registry { $registry })
            }
            // The loader calls every function in `.init_array` before `main` (after std's own
            // prioritised entries, which capture the arguments).
            #[used]
            #[unsafe(link_section = ".init_array")]
            static GREENROOM_TEST_SUPPORT_ENTRY: extern "C" fn() = greenroom_test_support_entry;
        };
    };
}

/// Set by the first entry: a second invocation of the macro is a mistake worth stopping on
/// (its registry would be silently ignored).
static INSTALLED: AtomicBool = AtomicBool::new(false);

/// What [`test_support!`](crate::test_support) runs before `main`. Never unwinds: a panic
/// ends the process with a message, since unwinding out of the loader's call is undefined.
#[doc(hidden)]
pub fn before_main(registry: impl FnOnce() -> Registry) {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        if INSTALLED.swap(true, Ordering::SeqCst) {
            fail("greenroom_host::test_support! is invoked more than once in this binary; invoke it once, with one registry of every actor type the tests use");
        }
        match Role::current() {
            Role::Client => {
                greenroom::actor::set_program_registry(&registry());
                process_role::record_entry(Entry::BeforeMain);
            }
            role => {
                prepare_process();
                let registry = registry();
                match role {
                    Role::Admin => greenroom::admin::run_from_env(),
                    Role::Gateway => greenroom::convention::gateway::run_from_env(),
                    _ => crate::host::run(&registry),
                }
            }
        }
    }));
    if let Err(panic) = outcome {
        fail(&format!(
            "greenroom_host::test_support!: a panic before main: {}",
            greenroom::actor::panic_text(panic.as_ref())
        ));
    }
}

/// Says why on stderr (written directly: libtest's output capture is not in force, and a
/// panic here could not unwind) and ends the process.
fn fail(why: &str) -> ! {
    let _ = writeln!(std::io::stderr(), "{why}");
    std::process::exit(EXIT_ENTRY_FAILED)
}

/// The part of std's runtime set-up (`std::rt::init`, which runs just before `main`) that an
/// admin or host relies on, for a process that never reaches `main`:
///
/// - fds 0, 1 and 2 are open (on `/dev/null` if they were closed), so that no socket the
///   runtime opens lands on one of them and receives stray output;
/// - `SIGPIPE` is ignored, so that writing to a peer that died is an `EPIPE` the runtime
///   handles, not the death of the admin or host.
///
/// Arguments and the environment need nothing: glibc hands them to std before any
/// `.init_array` entry of the program runs.
fn prepare_process() {
    for fd in 0..=2 {
        // SAFETY: fcntl(F_GETFD) only reads the flags of a descriptor number.
        let closed = unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1
            && std::io::Error::last_os_error().raw_os_error() == Some(libc::EBADF);
        if closed {
            // SAFETY: open with a constant NUL-terminated path; the lowest free descriptor,
            // `fd`, is the one it takes (lower ones are open). Deliberately never closed.
            unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) };
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}
