//! The two ends of the DNS workload: a query for one A record, and the
//! responder's answer to it.
//!
//! Invariant: [`answer`] never panics and never allocates more than the
//! query's length plus a fixed answer, whatever bytes it is given; it
//! answers only a well-formed single-question query.

/// The address every answer carries (TEST-NET-1: never routed).
pub const ANSWER: [u8; 4] = [192, 0, 2, 53];

/// The name every query asks for, under the reserved `.invalid` top-level
/// domain, so that no real resolver would ever answer it.
const NAME: &[&[u8]] = &[b"bench", b"slipway", b"invalid"];

/// A recursive query with id `id` for the A record of the fixed name.
#[must_use]
pub fn query(id: u16) -> Vec<u8> {
    let mut message = Vec::with_capacity(48);
    message.extend_from_slice(&id.to_be_bytes());
    // RD set; one question.
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in NAME {
        message.push(u8::try_from(label.len()).unwrap_or(63));
        message.extend_from_slice(label);
    }
    message.push(0);
    // QTYPE A, QCLASS IN.
    message.extend_from_slice(&[0, 1, 0, 1]);
    message
}

/// The id of a response, if `message` is one (QR set, at least a header).
#[must_use]
pub fn response_id(message: &[u8]) -> Option<u16> {
    let id = u16::from_be_bytes([*message.first()?, *message.get(1)?]);
    (message.get(2)? & 0x80 != 0).then_some(id)
}

/// The response to `query`: the question echoed and one A record,
/// [`ANSWER`], with TTL 0. `None` for anything but a query with exactly one
/// question whose name is well formed.
#[must_use]
pub fn answer(query: &[u8]) -> Option<Vec<u8>> {
    let header = query.get(..12)?;
    let is_query = header[2] & 0x80 == 0;
    let one_question = header[4..6] == [0, 1];
    if !is_query || !one_question {
        return None;
    }
    // Walk the question's labels (no compression in a question we accept).
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len > 63 {
            return None;
        }
        at += 1 + len;
    }
    let question_end = at + 4;
    let question = query.get(12..question_end)?;
    let mut response = Vec::with_capacity(question_end + 16);
    response.extend_from_slice(&header[..2]);
    // QR, opcode 0, RD copied; RA; RCODE 0.
    response.push(0x80 | (header[2] & 0x01));
    response.push(0x80);
    response.extend_from_slice(&[0, 1, 0, 1, 0, 0, 0, 0]);
    response.extend_from_slice(question);
    // The answer names the question by a pointer to offset 12.
    response.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
    response.extend_from_slice(&ANSWER);
    Some(response)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn answer_echoes_the_id_and_question_and_carries_one_a_record() {
        let q = query(0xbeef);
        let r = answer(&q).unwrap();
        assert_eq!(response_id(&r), Some(0xbeef));
        assert_eq!(&r[4..8], &[0, 1, 0, 1]);
        assert_eq!(&r[12..q.len()], &q[12..]);
        assert_eq!(&r[r.len() - 4..], &ANSWER);
        assert_eq!(response_id(&q), None, "a query is not a response");
    }

    #[test]
    fn malformed_queries_get_no_answer() {
        let q = query(1);
        for cut in 0..q.len() {
            assert_eq!(answer(&q[..cut]), None, "truncated at {cut}");
        }
        let mut response = q.clone();
        response[2] |= 0x80;
        assert_eq!(answer(&response), None);
        let mut two = q.clone();
        two[5] = 2;
        assert_eq!(answer(&two), None);
        let mut long_label = q;
        long_label[12] = 64;
        assert_eq!(answer(&long_label), None);
    }
}
