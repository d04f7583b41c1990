//! Scenario tests of the deadline-driven wait against real fds.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use epoll_dispatch::{Events, Interest, Kind, Poller, Token, WaitStats};

const FLOW: Kind = Kind(1);

fn token(index: u32, generation: u32) -> io::Result<Token> {
    Token::new(FLOW, index, generation)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "index too large"))
}

/// A connected pair whose `reader` end has unread data.
fn readable_pair() -> io::Result<(UnixStream, UnixStream)> {
    let (reader, mut writer) = UnixStream::pair()?;
    reader.set_nonblocking(true)?;
    writer.write_all(b"unread")?;
    Ok((reader, writer))
}

#[test]
fn idle_wait_without_deadline_makes_no_wakeups_until_woken() -> io::Result<()> {
    let mut poller = Poller::new()?;
    let waker = poller.waker();
    let stop = Arc::new(AtomicBool::new(false));
    let stop_seen = Arc::clone(&stop);
    let sleeper = thread::spawn(move || -> io::Result<(u64, WaitStats)> {
        let mut events = Events::with_capacity(16);
        let mut returns = 0;
        loop {
            poller.wait(&mut events, None)?;
            returns += 1;
            if stop_seen.load(Ordering::SeqCst) {
                return Ok((returns, poller.stats()));
            }
        }
    });
    thread::sleep(Duration::from_secs(2));
    stop.store(true, Ordering::SeqCst);
    waker.wake();
    let (returns, stats) = sleeper
        .join()
        .map_err(|_| io::Error::other("sleeper panicked"))??;
    assert_eq!(returns, 1, "only the waker may end an idle wait");
    assert_eq!(stats.syscalls, 1);
    assert_eq!(stats.waker_wakeups, 1);
    assert_eq!(stats.empty_wakeups, 0);
    Ok(())
}

#[test]
fn deadline_wait_returns_once_at_or_after_the_deadline() -> io::Result<()> {
    let mut poller = Poller::new()?;
    let mut events = Events::with_capacity(16);
    let deadline = Instant::now() + Duration::from_millis(50);
    let n = poller.wait(&mut events, Some(deadline))?;
    let returned = Instant::now();
    assert_eq!(n, 0);
    assert!(events.is_empty());
    assert!(
        returned >= deadline,
        "returned {:?} early",
        deadline - returned
    );
    let stats = poller.stats();
    assert_eq!(stats.waits, 1);
    assert_eq!(stats.syscalls, 1, "one sleep, no retry: {stats:?}");
    assert_eq!(stats.empty_wakeups, 1);
    Ok(())
}

#[test]
fn past_deadline_polls_and_returns_at_once() -> io::Result<()> {
    let mut poller = Poller::new()?;
    let mut events = Events::with_capacity(4);
    let start = Instant::now();
    let n = poller.wait(&mut events, Some(start))?;
    assert_eq!(n, 0);
    assert!(start.elapsed() < Duration::from_millis(50));
    Ok(())
}

#[test]
fn narrowed_interest_stops_a_level_triggered_spin() -> io::Result<()> {
    let mut poller = Poller::new()?;
    let mut events = Events::with_capacity(16);
    let (reader, _writer) = readable_pair()?;
    let flow = token(7, 1)?;
    poller.register(&reader, flow, Interest::READABLE | Interest::RDHUP)?;

    // Level-triggered: undrained data is reported on every wait.
    for _ in 0..3 {
        let deadline = Instant::now() + Duration::from_millis(100);
        assert_eq!(poller.wait(&mut events, Some(deadline))?, 1);
        let Some((got, readiness)) = events.iter().next() else {
            return Err(io::Error::other("no event"));
        };
        assert_eq!(got, flow);
        assert!(readiness.is_readable());
    }

    poller.modify(&reader, flow, Interest::RDHUP)?;
    let before = poller.stats();
    let deadline = Instant::now() + Duration::from_millis(100);
    assert_eq!(poller.wait(&mut events, Some(deadline))?, 0);
    assert!(Instant::now() >= deadline);
    let after = poller.stats();
    assert_eq!(after.syscalls - before.syscalls, 1, "the wait slept once");
    Ok(())
}

#[test]
fn waker_from_another_thread_ends_a_sleeping_wait_promptly() -> io::Result<()> {
    let mut poller = Poller::new()?;
    let waker = poller.waker();
    let waking = thread::spawn(move || {
        thread::sleep(Duration::from_millis(200));
        let woke_at = Instant::now();
        waker.wake();
        woke_at
    });
    let mut events = Events::with_capacity(16);
    let n = poller.wait(&mut events, None)?;
    let returned = Instant::now();
    let woke_at = waking
        .join()
        .map_err(|_| io::Error::other("waking thread panicked"))?;
    assert_eq!(n, 1);
    assert!(events.woken());
    assert_eq!(
        events.iter().map(|(t, _)| t).collect::<Vec<_>>(),
        [Token::WAKER]
    );
    let latency = returned.saturating_duration_since(woke_at);
    assert!(
        latency < Duration::from_millis(100),
        "woke after {latency:?}"
    );
    Ok(())
}

#[test]
fn waker_is_drained_so_it_does_not_stay_readable() -> io::Result<()> {
    let mut poller = Poller::new()?;
    let waker = poller.waker();
    let clones: Vec<_> = (0..4).map(|_| Arc::clone(&waker)).collect();
    for each in &clones {
        each.wake();
    }
    let mut events = Events::with_capacity(16);
    assert_eq!(poller.wait(&mut events, None)?, 1, "wakes coalesce");
    assert!(events.woken());
    let deadline = Instant::now() + Duration::from_millis(30);
    assert_eq!(poller.wait(&mut events, Some(deadline))?, 0);
    assert!(!events.woken());

    // A wake after the drain is not lost.
    waker.wake();
    assert_eq!(poller.wait(&mut events, None)?, 1);
    assert!(events.woken());
    Ok(())
}

#[test]
fn waker_wakes_a_wait_that_starts_later() -> io::Result<()> {
    let mut poller = Poller::new()?;
    poller.waker().wake();
    let mut events = Events::with_capacity(4);
    let deadline = Instant::now() + Duration::from_secs(5);
    assert_eq!(poller.wait(&mut events, Some(deadline))?, 1);
    assert!(Instant::now() < deadline);
    Ok(())
}

#[test]
fn edge_triggered_readiness_is_reported_once_per_change() -> io::Result<()> {
    let mut poller = Poller::new()?;
    let mut events = Events::with_capacity(16);
    let (reader, mut writer) = readable_pair()?;
    let flow = token(3, 9)?;
    poller.register(&reader, flow, Interest::READABLE.edge_triggered())?;

    assert_eq!(poller.wait(&mut events, None)?, 1);
    let deadline = Instant::now() + Duration::from_millis(30);
    assert_eq!(
        poller.wait(&mut events, Some(deadline))?,
        0,
        "undrained, unchanged"
    );

    writer.write_all(b"more")?;
    assert_eq!(poller.wait(&mut events, None)?, 1, "new data is a new edge");
    Ok(())
}

#[test]
fn unregistered_fd_reports_nothing() -> io::Result<()> {
    let mut poller = Poller::new()?;
    let mut events = Events::with_capacity(16);
    let (reader, _writer) = readable_pair()?;
    poller.register(&reader, token(1, 1)?, Interest::READABLE)?;
    assert_eq!(poller.wait(&mut events, None)?, 1);
    poller.unregister(&reader)?;
    let deadline = Instant::now() + Duration::from_millis(30);
    assert_eq!(poller.wait(&mut events, Some(deadline))?, 0);
    let error = poller.unregister(&reader).map_err(|e| e.raw_os_error());
    assert_eq!(error, Err(Some(2)), "ENOENT once removed");
    Ok(())
}

#[test]
fn peer_shutdown_reports_read_hangup_and_event_carries_the_token() -> io::Result<()> {
    let mut poller = Poller::new()?;
    let mut events = Events::with_capacity(16);
    let (mut reader, writer) = UnixStream::pair()?;
    reader.set_nonblocking(true)?;
    let flow = token(Token::MAX_INDEX, u32::MAX)?;
    poller.register(&reader, flow, Interest::RDHUP)?;
    writer.shutdown(std::net::Shutdown::Write)?;

    assert_eq!(poller.wait(&mut events, None)?, 1);
    let Some((got, readiness)) = events.iter().next() else {
        return Err(io::Error::other("no event"));
    };
    assert_eq!(got, flow);
    assert_eq!(got.kind(), FLOW);
    assert_eq!(got.index(), Token::MAX_INDEX);
    assert_eq!(got.generation(), u32::MAX);
    assert!(readiness.is_read_hangup());
    assert!(!readiness.is_error());
    let mut buf = [0u8; 4];
    assert_eq!(reader.read(&mut buf)?, 0, "end of file");
    Ok(())
}

#[test]
fn writable_interest_reports_writable() -> io::Result<()> {
    let mut poller = Poller::new()?;
    let mut events = Events::with_capacity(16);
    let (a, _b) = UnixStream::pair()?;
    poller.register(&a, token(2, 0)?, Interest::WRITABLE)?;
    assert_eq!(poller.wait(&mut events, None)?, 1);
    let writable = events.iter().all(|(_, readiness)| readiness.is_writable());
    assert!(writable);
    poller.modify(&a, token(2, 0)?, Interest::NONE)?;
    assert_eq!(poller.wait(&mut events, Some(Instant::now()))?, 0);
    Ok(())
}

#[test]
fn events_beyond_capacity_come_back_on_the_next_wait() -> io::Result<()> {
    let mut poller = Poller::new()?;
    let mut events = Events::with_capacity(2);
    let capacity = events.capacity();
    let total = 2 * capacity + 1;
    let pairs = (0..total)
        .map(|_| readable_pair())
        .collect::<io::Result<Vec<_>>>()?;
    for (index, (reader, _)) in (0u32..).zip(&pairs) {
        poller.register(reader, token(index, 0)?, Interest::READABLE)?;
    }
    let mut seen = Vec::new();
    for expected in [capacity, capacity, 1] {
        assert_eq!(poller.wait(&mut events, None)?, expected);
        // Level-triggered fds stay ready: unregister the reported ones so the
        // next wait reports the rest.
        for (token, _) in &events {
            let index = token.index();
            poller.unregister(&pairs[index as usize].0)?;
            seen.push(index);
        }
    }
    seen.sort_unstable();
    assert_eq!(seen, (0u32..).take(total).collect::<Vec<_>>());
    Ok(())
}

#[test]
fn registering_twice_fails_with_eexist() -> io::Result<()> {
    let poller = Poller::new()?;
    let (a, _b) = UnixStream::pair()?;
    poller.register(&a, token(0, 0)?, Interest::READABLE)?;
    let error = poller.register(&a, token(0, 1)?, Interest::READABLE);
    assert_eq!(
        error.map_err(|e| e.kind()),
        Err(io::ErrorKind::AlreadyExists)
    );
    Ok(())
}
