//! Making sure the kernel stamps arrivals before a run starts.
//!
//! `SO_TIMESTAMPNS` on a socket does not switch arrival stamps on at once: the
//! kernel flips a global switch from a work queue, and until that has run it stamps
//! each datagram when it is *read* instead (its "race" fallback). dnsload reads
//! answers on a 1 ms timer in open loop, so the answers of a run's first tens of
//! milliseconds (22 ms here at 50k QPS, with the worker's core busy: 0.7 % of a
//! 3 s run) carried up to 1 ms of the worker's read delay and alone made the p99.
//! The switch stays on while any socket asks for stamps, so a run holds one such
//! socket from before its start to its end, and starts only once a datagram sent to
//! that socket is stamped on arrival.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::limits::{
    STAMP_PROBE_EVERY_NS, STAMP_PROBE_GAP_NS, STAMP_PROBE_READ_NS, STAMP_WAIT_MAX_NS,
};

/// A loopback socket with arrival stamps on, held for a whole run so the kernel's
/// switch for them stays on.
pub struct ArrivalStamps {
    /// Connected to itself: the probes go round through loopback.
    socket: UdpSocket,
}

impl ArrivalStamps {
    /// What a run holds from before its start to its end: the probe socket once
    /// stamps are on; with a warning on stderr when they did not come on within
    /// `STAMP_WAIT_MAX_NS` (held anyway) or loopback cannot be used (none).
    pub fn for_run() -> Option<Self> {
        const EFFECT: &str =
            "the first answers' latencies may include the time they waited to be read";
        match Self::await_on() {
            Ok((stamps, true)) => Some(stamps),
            Ok((stamps, false)) => {
                let ms = STAMP_WAIT_MAX_NS / 1_000_000;
                eprintln!("dnsload: the kernel did not stamp arrivals within {ms} ms; {EFFECT}");
                Some(stamps)
            }
            Err(e) => {
                eprintln!("dnsload: cannot check arrival stamps on loopback ({e}); {EFFECT}");
                None
            }
        }
    }

    /// Opens the probe socket and waits (at most `STAMP_WAIT_MAX_NS`) until a probe
    /// is stamped when it arrived rather than when it was read. `Ok(false)`: the wait
    /// ran out; stamps of the first answers may then include read delays.
    pub fn await_on() -> io::Result<(Self, bool)> {
        let socket = UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .or_else(|_| UdpSocket::bind(SocketAddr::from((Ipv6Addr::LOCALHOST, 0))))?;
        socket.connect(socket.local_addr()?)?;
        socket.set_read_timeout(Some(Duration::from_nanos(STAMP_PROBE_READ_NS)))?;
        mmsg::enable_receive_stamps(socket.as_raw_fd())?;
        let stamps = ArrivalStamps { socket };
        let deadline = Instant::now() + Duration::from_nanos(STAMP_WAIT_MAX_NS);
        loop {
            if stamps.probe_stamped_on_arrival()? {
                return Ok((stamps, true));
            }
            if Instant::now() >= deadline {
                return Ok((stamps, false));
            }
            std::thread::sleep(Duration::from_nanos(STAMP_PROBE_EVERY_NS));
        }
    }

    /// Sends one probe, reads it `STAMP_PROBE_GAP_NS` later: true when its stamp is
    /// at least half that gap before the read.
    fn probe_stamped_on_arrival(&self) -> io::Result<bool> {
        self.socket.send(&[0])?;
        std::thread::sleep(Duration::from_nanos(STAMP_PROBE_GAP_NS));
        let mut headers = mmsg::RecvHeaders::new(1, false, true);
        let mut slot = [0u8; 16];
        // Blocking read (with the timeout above): the probe is on its way.
        let got = headers.receive(self.socket.as_raw_fd(), [&mut slot[..]], 1, 0)?;
        let read_ns = wall_now_ns();
        let Some((secs, nanos)) = headers.stamp(0).filter(|_| got == 1) else {
            return Ok(false);
        };
        let stamp_ns = i128::from(secs) * 1_000_000_000 + i128::from(nanos);
        Ok(read_ns - stamp_ns >= i128::from(STAMP_PROBE_GAP_NS / 2))
    }
}

fn wall_now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrival_stamps_come_on_before_a_run() {
        let (stamps, on) = ArrivalStamps::await_on().expect("loopback probe socket");
        assert!(on, "the kernel never stamped a probe on arrival");
        // And they stay on while the socket is held.
        assert!(stamps.probe_stamped_on_arrival().expect("probe"));
    }
}
