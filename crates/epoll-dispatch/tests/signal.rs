//! A signal delivered during a wait neither ends it early nor loses the
//! deadline. In its own test binary because signal dispositions are
//! process-wide.

use std::io;
use std::os::unix::thread::JoinHandleExt;
use std::thread;
use std::time::{Duration, Instant};

use epoll_dispatch::{Events, Poller, WaitStats};

extern "C" fn ignore_signal(_: libc::c_int) {}

fn install_noop_handler(signal: libc::c_int) -> io::Result<()> {
    // SAFETY: an all-zero `sigaction` is a valid value (empty mask, no flags).
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = ignore_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // No SA_RESTART: epoll_wait is never restarted anyway, and the handler
    // must interrupt it rather than kill the process.
    action.sa_flags = 0;
    // SAFETY: `action` is initialised, the handler is async-signal-safe (it
    // does nothing), and a null old-action pointer is allowed.
    let rc = unsafe { libc::sigaction(signal, &raw const action, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[test]
fn interrupted_wait_retries_until_the_deadline() -> io::Result<()> {
    install_noop_handler(libc::SIGUSR1)?;
    let mut poller = Poller::new()?;
    let deadline = Instant::now() + Duration::from_millis(300);
    let sleeper = thread::spawn(move || -> io::Result<(usize, Instant, WaitStats)> {
        let mut events = Events::with_capacity(4);
        let n = poller.wait(&mut events, Some(deadline))?;
        Ok((n, Instant::now(), poller.stats()))
    });
    let thread = sleeper.as_pthread_t();
    // Several signals, since one sent before the thread enters epoll_wait
    // interrupts nothing.
    for _ in 0..10 {
        thread::sleep(Duration::from_millis(15));
        // SAFETY: the thread is still running (it sleeps until `deadline`,
        // well after the last signal), so its pthread_t is valid.
        let rc = unsafe { libc::pthread_kill(thread, libc::SIGUSR1) };
        assert_eq!(rc, 0);
    }
    let (n, returned, stats) = sleeper
        .join()
        .map_err(|_| io::Error::other("sleeper panicked"))??;
    assert_eq!(n, 0);
    assert!(returned >= deadline, "returned early");
    assert!(
        stats.interrupted >= 1,
        "no signal landed in the wait: {stats:?}"
    );
    assert_eq!(stats.waits, 1);
    assert_eq!(stats.syscalls, 1 + stats.interrupted);
    Ok(())
}
