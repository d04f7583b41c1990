//! Host peers as on a real network (MSS 1460, urgent data) and TCP options
//! as Linux reads them.

use test_support::harness;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4};
use std::thread;
use std::time::{Duration, Instant};

use smoltcp::wire::TcpControl;

use harness::{
    Frame, GUEST_IP, GuestSeg, GuestTcp, Harness, State, TcpOpts, fnv, gateway_mac, listen,
    pattern, serve,
};

// ----- host peers as on a real network -----

/// A listener on 127.0.0.1 whose connections announce MSS 1460, as a peer
/// on a real network does: the host socket slipway connects to it then has
/// a send buffer (about 69 KB) that never frees a 65480-byte segment.
fn listen_mss_1460() -> std::net::TcpListener {
    use rustix::net::{AddressFamily, SocketType, bind, listen, socket};
    use std::os::fd::AsRawFd;
    let fd = socket(AddressFamily::INET, SocketType::STREAM, None).unwrap();
    let mss: libc::c_int = 1460;
    // SAFETY: `fd` is a live socket for the call; the value points at a
    // `c_int` that outlives it, and the length is its size.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&raw const mss).cast::<libc::c_void>(),
            libc::socklen_t::try_from(size_of::<libc::c_int>()).unwrap(),
        )
    };
    assert_eq!(rc, 0, "TCP_MAXSEG: {}", std::io::Error::last_os_error());
    bind(&fd, &SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).unwrap();
    listen(&fd, 16).unwrap();
    std::net::TcpListener::from(fd)
}

/// Opens a connection from the guest (MSS 65480, slipway's default MTU) to
/// `server` and drives it until established.
fn open_flow_to<T>(h: &mut Harness, server: &harness::Server<T>, port: u16) -> GuestTcp {
    let mut ep = GuestTcp::new(TcpOpts::default(), port, server.guest_addr(), 0x1234_0000);
    ep.connect(Instant::now(), &mut h.backend);
    let up = h.drive(&mut ep, Duration::from_secs(5), |ep, _| {
        ep.state() == State::Established
    });
    assert!(up, "handshake: {:?}", ep.stats());
    assert!(
        server.accepted_within(Duration::from_secs(5)).is_some(),
        "the server saw the connection"
    );
    ep
}

/// An idle connection from a guest with a 65520-byte MTU to a peer with
/// MSS 1460: the host send buffer never frees a whole guest segment, and
/// the flow must not wait for writable readiness the socket reports all the
/// time (a level-triggered `EPOLLOUT` on every wait).
#[test]
fn idle_flow_to_mss_1460_peer_leaves_loop_quiet() {
    let server = serve(listen_mss_1460(), |mut stream| {
        let mut got = [0u8; 10];
        stream.read_exact(&mut got).unwrap();
        got
    });
    let mut h = Harness::new();
    let mut ep = open_flow_to(&mut h, &server, 40100);
    h.assert_quiet("an idle flow to an MSS-1460 peer");

    // The flow still carries data, both ways.
    ep.send(b"still here");
    let acked = h.drive(&mut ep, Duration::from_secs(3), |ep, _| ep.all_acked());
    assert!(acked, "guest data after the idle time: {:?}", ep.stats());
    let closed = h.drive(&mut ep, Duration::from_secs(3), |ep, _| ep.peer_fin());
    assert!(closed, "the server's FIN: {:?}", ep.stats());
    assert_eq!(&server.join().expect("the server ran"), b"still here");
}

/// A host peer's urgent byte (`send(MSG_OOB)`) is one more byte of the
/// stream for the guest, whose socket gets no urgent pointer: every byte,
/// the urgent one included, arrives in order, and the flow goes on.
#[test]
fn urgent_byte_from_host_peer_reaches_guest_in_order() {
    let head = pattern(200_000, 41);
    let tail = pattern(300_000, 42);
    let mut expected = head.clone();
    expected.push(b'!');
    expected.extend_from_slice(&tail);
    let server = serve(listen(), move |mut stream| {
        stream.write_all(&head).unwrap();
        thread::sleep(Duration::from_millis(20));
        let sent = rustix::net::send(&stream, b"!", rustix::net::SendFlags::OOB).unwrap();
        assert_eq!(sent, 1);
        thread::sleep(Duration::from_millis(20));
        stream.write_all(&tail).unwrap();
        stream.shutdown(Shutdown::Write).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
        rest
    });
    let mut h = Harness::new();
    let mut ep = open_flow_to(&mut h, &server, 40101);
    let total = expected.len() as u64;
    let done = h.drive(&mut ep, Duration::from_secs(10), |ep, _| ep.peer_fin());
    assert!(
        done,
        "{} of {total} bytes and no FIN: {:?}",
        ep.received_len(),
        ep.stats()
    );
    assert_eq!(ep.received_len(), total);
    assert_eq!(ep.received_hash(), fnv(&expected), "bytes in order");
    assert_eq!(ep.stats().rsts, 0);
    h.assert_quiet("after a stream with an urgent byte");

    // The flow goes on after the mark: the guest's reply reaches the peer.
    ep.send(b"after the mark");
    ep.close();
    let closed = h.drive(&mut ep, Duration::from_secs(5), |ep, _| ep.fin_acked());
    assert!(closed, "close: {:?}", ep.stats());
    assert_eq!(server.join().expect("the server ran"), b"after the mark");
}

// ----- TCP options as Linux reads them -----

/// The frame of `seg` with `options` (a multiple of 4 bytes, written as
/// they are, however malformed) in place of its own, carrying `payload`.
fn frame_with_raw_options(seg: &GuestSeg, options: &[u8], payload: &[u8]) -> Vec<u8> {
    use smoltcp::wire::{IpAddress, IpProtocol, TcpPacket};
    assert_eq!(options.len() % 4, 0, "options fill whole words");
    let tcp_len = 20 + options.len() + payload.len();
    let mut buf = vec![0u8; 14 + 20 + tcp_len];
    let (src, dst) = (GUEST_IP, *seg.dst.ip());
    let len = harness::frames::write_ipv4(
        &mut buf,
        gateway_mac(),
        src,
        dst,
        IpProtocol::Tcp,
        tcp_len,
        |area| {
            let mut tcp = TcpPacket::new_unchecked(area);
            tcp.set_src_port(seg.src_port);
            tcp.set_dst_port(seg.dst.port());
            tcp.set_seq_number(smoltcp::wire::TcpSeqNumber(i32::from_ne_bytes(
                seg.seq.to_ne_bytes(),
            )));
            tcp.set_ack_number(smoltcp::wire::TcpSeqNumber(i32::from_ne_bytes(
                seg.ack.unwrap_or(0).to_ne_bytes(),
            )));
            tcp.set_header_len(u8::try_from(20 + options.len()).unwrap());
            tcp.clear_flags();
            tcp.set_syn(seg.control == TcpControl::Syn);
            tcp.set_fin(seg.control == TcpControl::Fin);
            tcp.set_psh(seg.control == TcpControl::Psh);
            tcp.set_ack(seg.ack.is_some());
            tcp.set_window_len(seg.window);
            tcp.set_urgent_at(0);
            tcp.options_mut().copy_from_slice(options);
            tcp.payload_mut().copy_from_slice(payload);
            tcp.fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
        },
    );
    buf.truncate(len);
    buf
}

/// Sends `syn` (a frame) from guest port `port`, takes slipway's SYN-ACK and
/// acknowledges it with a bare ACK from guest sequence number `iss + 1`;
/// returns the SYN-ACK's sequence number and MSS option.
fn raw_handshake(
    h: &mut Harness,
    syn: &[u8],
    port: u16,
    to: SocketAddrV4,
    iss: u32,
) -> (u32, Option<u16>) {
    h.send(syn);
    let frames = h.collect_until(Duration::from_secs(3), |f| {
        f.tcp().is_some_and(|t| t.dst.port() == port)
    });
    let syn_ack = frames
        .last()
        .and_then(Frame::tcp)
        .expect("an answer to the SYN");
    assert!(syn_ack.syn && !syn_ack.rst, "a SYN-ACK: {syn_ack:?}");
    assert_eq!(syn_ack.ack, Some(iss.wrapping_add(1)));
    let ack = GuestSeg::bare(
        port,
        to,
        iss.wrapping_add(1),
        Some(syn_ack.seq.wrapping_add(1)),
        TcpControl::None,
    );
    h.send(&ack.frame(&[]));
    (syn_ack.seq, syn_ack.mss)
}

/// Linux stops reading options at one whose length is 0 (or 1, or runs past
/// the header) and keeps the segment with the options before it: such a
/// SYN is answered, and the MSS it carried bounds every segment to the
/// guest.
#[test]
fn syn_with_mss_then_zero_length_option_is_answered_and_the_mss_kept() {
    let data = pattern(20_000, 51);
    let sent = data.clone();
    let server = serve(listen(), move |mut stream| {
        stream.write_all(&sent).unwrap();
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest);
    });
    let mut h = Harness::new();
    let port = 40110;
    let iss = 0x0100_0000;
    let syn = GuestSeg {
        mss: None,
        ..GuestSeg::syn(port, server.guest_addr(), iss, None)
    };
    // MSS 1460, then an option of kind 8 with length 0, then padding.
    let options = [2, 4, 0x05, 0xb4, 8, 0, 0, 0];
    let frame = frame_with_raw_options(&syn, &options, &[]);
    let (_, mss) = raw_handshake(&mut h, &frame, port, server.guest_addr(), iss);
    assert_eq!(mss, Some(65480), "slipway's own MSS");

    let mut got = Vec::new();
    let frames = h.collect_until(Duration::from_secs(5), |f| {
        if let Some(t) = f.tcp_to(port) {
            got.extend_from_slice(t.payload);
        }
        got.len() >= data.len()
    });
    let lens: Vec<usize> = frames
        .iter()
        .filter_map(|f| f.tcp_to(port))
        .map(|t| t.payload.len())
        .filter(|&len| len > 0)
        .collect();
    assert_eq!(got, data, "the host's bytes: {lens:?}");
    assert!(
        lens.iter().all(|&len| len <= 1460) && lens.contains(&1460),
        "segments cut to the guest's MSS of 1460: {lens:?}"
    );
}

/// A data segment whose options end in one running past the header is kept,
/// as Linux keeps it: its payload reaches the host and is acknowledged.
#[test]
fn data_segment_with_overlong_option_is_delivered() {
    let server = serve(listen(), |mut stream| {
        let mut got = [0u8; 5];
        stream.read_exact(&mut got).unwrap();
        got
    });
    let mut h = Harness::new();
    let port = 40111;
    let iss = 0x0200_0000;
    let syn = GuestSeg::syn(port, server.guest_addr(), iss, None).frame(&[]);
    let (their_iss, _) = raw_handshake(&mut h, &syn, port, server.guest_addr(), iss);
    let data = GuestSeg::bare(
        port,
        server.guest_addr(),
        iss.wrapping_add(1),
        Some(their_iss.wrapping_add(1)),
        TcpControl::Psh,
    );
    // A NOP, then a timestamps option claiming 10 bytes where 3 are left.
    let options = [1, 8, 10, 0];
    h.send(&frame_with_raw_options(&data, &options, b"hello"));
    let frames = h.collect_until(Duration::from_secs(3), |f| {
        f.tcp_to(port)
            .is_some_and(|t| t.ack == Some(iss.wrapping_add(6)))
    });
    assert!(
        frames
            .iter()
            .filter_map(|f| f.tcp_to(port))
            .any(|t| t.ack == Some(iss.wrapping_add(6))),
        "the 5 bytes are acknowledged: {frames:?}"
    );
    assert_eq!(&server.join().expect("the server ran"), b"hello");
}
