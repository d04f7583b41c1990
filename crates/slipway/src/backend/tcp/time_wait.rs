//! TCP flows lingering in TIME-WAIT: their host sockets are closed already
//! and only their entries stay, so a new connection on the same 4-tuple, or
//! one that needs the room, takes over from them (RFC 6191).

use flow_table::tcp::Phase;
use flow_table::{FlowId, FlowKey, Protocol};

use super::super::{Backend, Flow};

impl Backend {
    /// True when one more TCP flow fits, after reclaiming the oldest flow
    /// in TIME-WAIT if the limit is reached (RFC 6191 lets a new connection
    /// take over from TIME-WAIT; here the old one's socket is closed
    /// already and only its entry lingers).
    pub(super) fn tcp_room(&mut self) -> bool {
        let limit = self.flows.limits().tcp;
        // Bounded: each turn removes a listed id.
        while self.flows.count(Protocol::Tcp) >= limit {
            let Some(id) = self.time_wait.pop_front() else {
                return false;
            };
            self.remove_if_time_wait(id);
        }
        true
    }

    /// Removes the flow of `key` if it only lingers in TIME-WAIT: its
    /// socket is closed already, and a new connection on the same 4-tuple
    /// replaces it. The guest side accepts that: slipway lingers only when
    /// it closed first, so the guest has forgotten the old connection.
    pub(super) fn end_time_wait(&mut self, key: &FlowKey) {
        if let Some(id) = self.flows.lookup(key) {
            self.remove_if_time_wait(id);
        }
    }

    /// Whether flow `id` is a TCP flow lingering in TIME-WAIT.
    fn lingers(&self, id: FlowId) -> bool {
        matches!(
            self.flows.get(id),
            Some(Flow::Tcp(flow)) if flow.driver.phase() == Phase::TimeWait
        )
    }

    /// Removes flow `id` if it is a TCP flow lingering in TIME-WAIT.
    fn remove_if_time_wait(&mut self, id: FlowId) {
        if self.lingers(id) && self.flows.remove(id).is_some() {
            self.counters.tcp_flows_closed += 1;
            self.counters.time_wait_reclaimed += 1;
        }
    }

    /// Lists flow `id`, whose phase is now `phase`, once it enters
    /// TIME-WAIT; then drops ids of flows that left TIME-WAIT from the
    /// front of the list: every flow lingers equally long, so the oldest
    /// leave first and the list stays about as long as the flows really
    /// lingering.
    pub(super) fn follow_time_wait(&mut self, id: FlowId, phase: Phase) {
        if phase == Phase::TimeWait
            && let Some(Flow::Tcp(flow)) = self.flows.get_mut(id)
            && !flow.in_time_wait
        {
            flow.in_time_wait = true;
            self.time_wait.push_back(id);
        }
        while let Some(&id) = self.time_wait.front() {
            if self.lingers(id) {
                break;
            }
            self.time_wait.pop_front();
        }
    }
}
