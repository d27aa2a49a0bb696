//! Migration of the TCP connections queued on a closing listener to the other
//! listeners of its reuseport group (the successor's), so that a hand-over resets
//! none of them.
//!
//! When a listener closes, the kernel resets every connection that completed its
//! handshake but was not accepted yet, and every handshake still in progress on it,
//! unless migration is on for its reuseport group (Linux 5.14+). glibc reports a reset
//! query as a permanent "Name or service not known", so a hand-over must not rely on
//! the operator having turned it on. Two ways, tried in this order:
//!
//! 1. A reuseport BPF program of attach type `BPF_SK_REUSEPORT_SELECT_OR_MIGRATE`
//!    attached to our TCP listeners' groups: with it the kernel migrates whatever the
//!    sysctl says (`reuseport_migrate_sock`). The program selects nothing and returns
//!    `SK_PASS`, so the kernel picks by hash exactly as without a program, for new
//!    connections and migrated ones alike. It only concerns our own groups. Loading it
//!    needs CAP_BPF (or CAP_SYS_ADMIN).
//! 2. `net.ipv4.tcp_migrate_req=1` in our network namespace (there is no IPv6 twin:
//!    the setting covers TCP over both). It needs a writable `/proc/sys` (a privileged
//!    container, or the host). For a host-network pod that namespace is the node's, so
//!    the setting then also applies to every other reuseport TCP server on the node;
//!    what it changes for them is only that connections queued on a listener they
//!    close move to their other listeners instead of being reset, which is what such
//!    servers want. We set it only when stopping with a successor and the program
//!    could not be attached, and say so in the log.
//!
//! If neither works (a container with CAP_NET_ADMIN only, as the upstream manifests
//! run), a warning says what is missing: connections arriving in the microseconds
//! between the last accept and the close are then reset.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

/// `BPF_PROG_LOAD` (include/uapi/linux/bpf.h `enum bpf_cmd`).
const BPF_PROG_LOAD: libc::c_long = 5;
/// `BPF_PROG_TYPE_SK_REUSEPORT`.
const BPF_PROG_TYPE_SK_REUSEPORT: u32 = 21;
/// `BPF_SK_REUSEPORT_SELECT_OR_MIGRATE` (`enum bpf_attach_type`).
const BPF_SK_REUSEPORT_SELECT_OR_MIGRATE: u32 = 40;
/// `SO_ATTACH_REUSEPORT_EBPF`.
const SO_ATTACH_REUSEPORT_EBPF: libc::c_int = 52;
/// `SK_PASS`: let the kernel pick (by hash) when the program selected nothing.
const SK_PASS: i32 = 1;
const MIGRATE_SYSCTL: &str = "/proc/sys/net/ipv4/tcp_migrate_req";
/// BPF_PROG_LOAD calls before giving up on EAGAIN (libbpf's `PROG_LOAD_ATTEMPTS`).
const PROG_LOAD_ATTEMPTS: u32 = 5;

/// One eBPF instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    /// dst_reg in the low nibble, src_reg in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

/// The first fields of `union bpf_attr` for `BPF_PROG_LOAD`; the rest zero (the
/// kernel requires unknown trailing bytes to be zero).
#[repr(C)]
struct ProgLoad {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// How queued connections are kept across the listeners' close.
#[derive(Debug)]
pub enum Migration {
    /// Our program is attached to the groups (see the module docs).
    Program,
    /// `net.ipv4.tcp_migrate_req` is 1 (it was, or we set it).
    Sysctl,
    /// Neither: the reason.
    Unavailable(String),
}

/// The program's descriptor, loaded once per process (every shard attaches the same
/// one); a failed load is tried again by the next caller.
fn program() -> Result<RawFd, std::io::Error> {
    static PROGRAM: Mutex<Option<OwnedFd>> = Mutex::new(None);
    let mut program = PROGRAM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if program.is_none() {
        *program = Some(load_program()?);
    }
    Ok(program.as_ref().map_or(-1, |p| p.as_raw_fd()))
}

/// Loads `r0 = SK_PASS; exit` as a reuseport program that may migrate.
fn load_program() -> Result<OwnedFd, std::io::Error> {
    const ALU64_MOV_K: u8 = 0xb7;
    const JMP_EXIT: u8 = 0x95;
    let insns = [
        Insn {
            code: ALU64_MOV_K,
            regs: 0,
            off: 0,
            imm: SK_PASS,
        },
        Insn {
            code: JMP_EXIT,
            regs: 0,
            off: 0,
            imm: 0,
        },
    ];
    let license = c"Apache-2.0";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"nld_migrate");
    let attr = ProgLoad {
        prog_type: BPF_PROG_TYPE_SK_REUSEPORT,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
        prog_name: name,
        prog_ifindex: 0,
        expected_attach_type: BPF_SK_REUSEPORT_SELECT_OR_MIGRATE,
    };
    // The verifier gives up with EAGAIN when interrupted (as by the signal that
    // stops us): try again a few times, as libbpf does.
    let mut attempts = PROG_LOAD_ATTEMPTS;
    let fd = loop {
        // SAFETY: `attr` is a valid BPF_PROG_LOAD attribute block of the size
        // passed; the instructions and the license it points to outlive the call.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoad,
                std::mem::size_of::<ProgLoad>(),
            )
        };
        let err = std::io::Error::last_os_error();
        attempts -= 1;
        match fd {
            fd if fd >= 0 => break fd,
            _ if err.raw_os_error() == Some(libc::EAGAIN) && attempts > 0 => continue,
            _ => return Err(err),
        }
    };
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Attaches the program to the groups of the TCP listeners `fds`.
fn attach(fds: &[RawFd]) -> Result<(), std::io::Error> {
    let prog_fd: libc::c_int = program()
        .map_err(|e| std::io::Error::new(e.kind(), format!("loading the program: {e}")))?;
    for &fd in fds {
        // SAFETY: `fd` is an open listener of this shard; the option value is a c_int
        // that outlives the call.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                SO_ATTACH_REUSEPORT_EBPF,
                (&prog_fd as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Turns on migration for the TCP listeners `fds` before they close (see the module
/// docs); logs what it did once per process.
pub fn enable(fds: &[RawFd]) -> Migration {
    let attached = attach(fds);
    let migration = match attached {
        Ok(()) => Migration::Program,
        Err(bpf) => match enable_sysctl(&bpf) {
            Ok(()) => Migration::Sysctl,
            Err(sysctl) => Migration::Unavailable(format!(
                "no reuseport migration program ({bpf}; needs CAP_BPF) and {MIGRATE_SYSCTL} not settable ({sysctl})"
            )),
        },
    };
    static LOGGED: OnceLock<()> = OnceLock::new();
    LOGGED.get_or_init(|| match &migration {
        Migration::Program => {
            tracing::info!("TCP hand-over: queued connections migrate to the successor (reuseport program)")
        }
        Migration::Sysctl => {
            tracing::info!("TCP hand-over: queued connections migrate to the successor (net.ipv4.tcp_migrate_req=1)")
        }
        Migration::Unavailable(why) => tracing::warn!(
            %why,
            "TCP hand-over: connections queued on the listeners as they close will be reset"
        ),
    });
    migration
}

/// Sets `net.ipv4.tcp_migrate_req=1` unless it is already (`bpf`: why the program
/// could not be attached, for the log).
fn enable_sysctl(bpf: &std::io::Error) -> Result<(), std::io::Error> {
    if std::fs::read_to_string(MIGRATE_SYSCTL)?.trim() == "1" {
        return Ok(());
    }
    std::fs::write(MIGRATE_SYSCTL, "1")?;
    tracing::warn!(%bpf, "set net.ipv4.tcp_migrate_req=1 in this network namespace for the TCP hand-over (no reuseport program)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpListener, TcpStream};
    use std::time::Duration;

    fn reuseport_listener(addr: SocketAddr) -> TcpListener {
        let s = socket2::Socket::new(
            socket2::Domain::IPV4,
            socket2::Type::STREAM,
            Some(socket2::Protocol::TCP),
        )
        .unwrap();
        s.set_reuse_port(true).unwrap();
        s.bind(&addr.into()).unwrap();
        s.listen(128).unwrap();
        s.into()
    }

    /// Runs `f` on a thread in a new network namespace (loopback up), where
    /// `tcp_migrate_req` has its default, 0.
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare affects only this thread's namespaces.
            let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
            assert_eq!(
                rc,
                0,
                "unshare(CLONE_NEWNET) needs root: {}",
                std::io::Error::last_os_error()
            );
            // A child forked from this thread starts in its namespace.
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .expect("ip");
            assert!(up.success());
            f()
        })
        .join()
        .unwrap()
    }

    /// The kernel behaviour the TCP hand-over relies on: with the program attached,
    /// connections queued (handshake done, not accepted) on a listener that closes
    /// move to the other listener of the group, with `tcp_migrate_req` off.
    #[test]
    fn queued_connections_move_to_the_other_listener_on_close() {
        in_new_netns(queued_connections_move);
    }

    fn queued_connections_move() {
        assert_eq!(std::fs::read_to_string(MIGRATE_SYSCTL).unwrap().trim(), "0");
        let old = reuseport_listener("127.0.0.1:0".parse().unwrap());
        let addr = old.local_addr().unwrap();
        let new = reuseport_listener(addr);
        let migration = enable(&[old.as_raw_fd()]);
        assert!(matches!(migration, Migration::Program), "{migration:?}");
        // Connections hash to either listener; keep those that queued on the old one
        // (the new one accepts and serves as they come).
        let clients: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(50));
        drop(old);
        new.set_nonblocking(true).unwrap();
        let mut accepted = Vec::new();
        for _ in 0..200 {
            match new.accept() {
                Ok((s, _)) => accepted.push(s),
                Err(_) if accepted.len() == clients.len() => break,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        assert_eq!(
            accepted.len(),
            clients.len(),
            "every connection reached the new listener"
        );
        for server in &mut accepted {
            server.write_all(b"y").unwrap();
        }
        for mut client in clients {
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            client.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            // Not reset: each client reads the byte of the socket that took it.
            assert_eq!(client.read(&mut b).unwrap(), 1);
        }
    }
}
