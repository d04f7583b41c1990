//! Readiness dispatch for the slipway event loop: an epoll set, an eventfd
//! waker, packed tokens and a wait that sleeps until the next deadline.
//!
//! Invariant: `epoll-dispatch` makes no protocol decisions and never reads the
//! clock on behalf of its callers except to bound a wait by their deadline.
