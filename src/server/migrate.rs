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
//!
//! Migration alone leaves one race: a handshake that completes on the closing
//! listener while it closes. The kernel checks the listener's state when the client's
//! ACK arrives, and if the listener closes on another CPU before the new connection
//! is queued, it is reset (`inet_csk_reqsk_queue_add` fails, `inet_child_forget`; no
//! migration counter says so); the client, whose query is on its way, sees a reset.
//! So each instance also **steers** ([`steer_all`]): once its shards run, it attaches
//! to each of its TCP listener groups a program of the same attach type that selects
//! among *its* listeners only (a `REUSEPORT_SOCKARRAY` map of them, one per shard, by
//! the connection's hash). From a successor's start on, no new handshake goes to its
//! predecessor's listeners, so by the time those close none is in progress on them;
//! the predecessor attaches nothing more when it stops (the successor's program
//! migrates too). When a steered listener closes the kernel drops it from the map, and
//! a selection that finds no socket falls back to the kernel's hash over the group.

use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Mutex, OnceLock};

/// `BPF_MAP_CREATE`, `BPF_MAP_UPDATE_ELEM` (include/uapi/linux/bpf.h `enum bpf_cmd`).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
/// `BPF_PROG_LOAD`.
const BPF_PROG_LOAD: libc::c_long = 5;
/// `BPF_MAP_TYPE_REUSEPORT_SOCKARRAY` (`enum bpf_map_type`).
const BPF_MAP_TYPE_REUSEPORT_SOCKARRAY: u32 = 20;
/// `BPF_FUNC_sk_select_reuseport` (`enum bpf_func_id`).
const BPF_FUNC_SK_SELECT_REUSEPORT: i32 = 82;
/// `BPF_PSEUDO_MAP_FD`: a 64-bit immediate load of a map by its descriptor.
const BPF_PSEUDO_MAP_FD: u8 = 1;
/// `offsetof(struct sk_reuseport_md, hash)`.
const MD_HASH: i16 = 32;
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

/// The first fields of `union bpf_attr` for `BPF_MAP_CREATE`.
#[repr(C)]
struct MapCreate {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

/// `union bpf_attr` for `BPF_MAP_UPDATE_ELEM`.
#[repr(C)]
struct MapUpdate {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
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

const ALU64_MOV_K: u8 = 0xb7;
const ALU64_MOV_X: u8 = 0xbf;
const ALU64_ADD_K: u8 = 0x07;
const ALU_MOD_K: u8 = 0x94;
const LDX_MEM_W: u8 = 0x61;
const STX_MEM_W: u8 = 0x63;
const LD_IMM64: u8 = 0x18;
const JMP_CALL: u8 = 0x85;
const JMP_EXIT: u8 = 0x95;

/// One instruction: `dst` and `src` registers, offset, immediate.
const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (dst & 0x0f) | (src << 4),
        off,
        imm,
    }
}

/// Loads `r0 = SK_PASS; exit` as a reuseport program that may migrate.
fn load_program() -> Result<OwnedFd, std::io::Error> {
    let insns = [
        insn(ALU64_MOV_K, 0, 0, 0, SK_PASS),
        insn(JMP_EXIT, 0, 0, 0, 0),
    ];
    load(&insns, b"nld_migrate")
}

/// Loads the steering program of one endpoint: select `map[hash % shards]`, then
/// `SK_PASS` (with nothing selected, as when the slot's listener has closed, the
/// kernel picks by hash over the whole group).
fn load_steering(map: RawFd, shards: u32) -> Result<OwnedFd, std::io::Error> {
    let insns = [
        insn(ALU64_MOV_X, 6, 1, 0, 0),                // r6 = ctx
        insn(LDX_MEM_W, 2, 1, MD_HASH, 0),            // r2 = ctx->hash
        insn(ALU_MOD_K, 2, 0, 0, shards as i32),      // r2 %= shards (32-bit)
        insn(STX_MEM_W, 10, 2, -4, 0),                // *(u32 *)(fp - 4) = r2
        insn(LD_IMM64, 2, BPF_PSEUDO_MAP_FD, 0, map), // r2 = map
        insn(0, 0, 0, 0, 0),
        insn(ALU64_MOV_X, 3, 10, 0, 0), // r3 = fp
        insn(ALU64_ADD_K, 3, 0, 0, -4), // r3 = fp - 4 (the key)
        insn(ALU64_MOV_K, 4, 0, 0, 0),  // r4 = 0 (flags)
        insn(ALU64_MOV_X, 1, 6, 0, 0),  // r1 = ctx
        insn(JMP_CALL, 0, 0, 0, BPF_FUNC_SK_SELECT_REUSEPORT), // its result does not matter
        insn(ALU64_MOV_K, 0, 0, 0, SK_PASS),
        insn(JMP_EXIT, 0, 0, 0, 0),
    ];
    load(&insns, b"nld_steer")
}

/// Loads `insns` as a reuseport program of attach type
/// `BPF_SK_REUSEPORT_SELECT_OR_MIGRATE` named `name` (at most 15 bytes).
fn load(insns: &[Insn], name: &[u8]) -> Result<OwnedFd, std::io::Error> {
    let license = c"Apache-2.0";
    let mut prog_name = [0u8; 16];
    let len = name.len().min(15);
    prog_name[..len].copy_from_slice(&name[..len]);
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
        prog_name,
        prog_ifindex: 0,
        expected_attach_type: BPF_SK_REUSEPORT_SELECT_OR_MIGRATE,
    };
    // The verifier gives up with EAGAIN when interrupted (as by the signal that
    // stops us): try again a few times, as libbpf does.
    let mut attempts = PROG_LOAD_ATTEMPTS;
    let fd = loop {
        attempts -= 1;
        match bpf(BPF_PROG_LOAD, &attr) {
            Ok(fd) => break fd,
            Err(err) if err.raw_os_error() == Some(libc::EAGAIN) && attempts > 0 => continue,
            Err(err) => return Err(err),
        }
    };
    // SAFETY: the kernel just returned this new descriptor to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Attaches the program to the groups of the TCP listeners `fds` (none: nothing to
/// do, the program is not even loaded).
fn attach(fds: &[RawFd]) -> Result<(), std::io::Error> {
    if fds.is_empty() {
        return Ok(());
    }
    let prog_fd: libc::c_int = program()
        .map_err(|e| std::io::Error::new(e.kind(), format!("loading the program: {e}")))?;
    for &fd in fds {
        attach_to(fd, prog_fd)?;
    }
    Ok(())
}

/// Attaches program `prog_fd` to the reuseport group of listener `fd`.
fn attach_to(fd: RawFd, prog_fd: RawFd) -> Result<(), std::io::Error> {
    // SAFETY: `fd` is an open listener of ours; the option value is a c_int that
    // outlives the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_EBPF,
            (&prog_fd as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    match rc {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Calls `bpf(cmd, attr)`; the descriptor or value it returns.
fn bpf<T>(cmd: libc::c_long, attr: &T) -> Result<libc::c_long, std::io::Error> {
    // SAFETY: `attr` is a valid attribute block of `cmd` of the size passed (the
    // kernel reads the fields it knows and requires nothing beyond); every pointer
    // in it outlives the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const T,
            std::mem::size_of::<T>(),
        )
    };
    match rc {
        rc if rc >= 0 => Ok(rc),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// The endpoints whose TCP listener groups this process steers.
static STEERED: Mutex<Vec<SocketAddr>> = Mutex::new(Vec::new());

/// Whether this process steers the TCP listener group of `addr` ([`steer_all`]):
/// then its program (or its successor's) migrates, and nothing is attached when
/// stopping.
pub fn steered(addr: SocketAddr) -> bool {
    STEERED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .contains(&addr)
}

/// Steers each endpoint's group to its listeners (`(address, one listener per shard)`,
/// listening and served); logs once where it cannot (no CAP_BPF), and those groups
/// get the migrating program when stopping instead.
pub fn steer_all(endpoints: &[(SocketAddr, Vec<RawFd>)]) {
    static LOGGED: std::sync::Once = std::sync::Once::new();
    let mut steered = STEERED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    for (addr, fds) in endpoints {
        steered.retain(|a| a != addr);
        match steer(fds) {
            Ok(()) => steered.push(*addr),
            Err(err) => LOGGED.call_once(|| {
                tracing::info!(%addr, %err, "TCP: new connections are not steered to this instance; a hand-over relies on migration alone")
            }),
        }
    }
}

/// Steers the new connections of one endpoint's reuseport group to `listeners` (this
/// process's, one per shard, listening) and attaches the program that also migrates
/// (see the module docs). An error (no CAP_BPF) leaves the group as it was; the
/// caller then attaches the migrating program when it stops.
fn steer(listeners: &[RawFd]) -> Result<(), std::io::Error> {
    let shards = u32::try_from(listeners.len())
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    let mut map_name = [0u8; 16];
    map_name[..9].copy_from_slice(b"nld_steer");
    let create = MapCreate {
        map_type: BPF_MAP_TYPE_REUSEPORT_SOCKARRAY,
        key_size: 4,
        value_size: 8,
        max_entries: shards,
        map_flags: 0,
        inner_map_fd: 0,
        numa_node: 0,
        map_name,
    };
    let map_fd = bpf(BPF_MAP_CREATE, &create)
        .map_err(|e| std::io::Error::new(e.kind(), format!("creating the socket map: {e}")))?;
    // SAFETY: the kernel just returned this new descriptor to us.
    let map = unsafe { OwnedFd::from_raw_fd(map_fd as RawFd) };
    for (slot, &fd) in (0u32..).zip(listeners) {
        let value = fd as u64;
        let update = MapUpdate {
            map_fd: map.as_raw_fd() as u32,
            _pad: 0,
            key: &slot as *const u32 as u64,
            value: &value as *const u64 as u64,
            flags: 0,
        };
        bpf(BPF_MAP_UPDATE_ELEM, &update)
            .map_err(|e| std::io::Error::new(e.kind(), format!("adding a listener: {e}")))?;
    }
    let program = load_steering(map.as_raw_fd(), shards)
        .map_err(|e| std::io::Error::new(e.kind(), format!("loading the program: {e}")))?;
    // The group holds the program, and the program the map: both descriptors close.
    attach_to(listeners[0], program.as_raw_fd())
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

    /// Two listeners of one reuseport group on loopback, in a namespace where
    /// `tcp_migrate_req` is 0 (its default).
    fn two_listeners() -> (TcpListener, TcpListener) {
        assert_eq!(std::fs::read_to_string(MIGRATE_SYSCTL).unwrap().trim(), "0");
        let first = reuseport_listener("127.0.0.1:0".parse().unwrap());
        let second = reuseport_listener(first.local_addr().unwrap());
        (first, second)
    }

    /// The kernel behaviour the TCP hand-over relies on: with the program attached,
    /// connections queued (handshake done, not accepted) on a listener that closes
    /// move to the other listener of the group, with `tcp_migrate_req` off.
    #[test]
    fn queued_connections_move_to_the_other_listener_on_close() {
        in_new_netns(queued_connections_move);
    }

    fn queued_connections_move() {
        let (old, new) = two_listeners();
        let migration = enable(&[old.as_raw_fd()]);
        assert!(matches!(migration, Migration::Program), "{migration:?}");
        queued_move_on_close(old, &new);
    }

    /// Connects 40 clients to the group of `closing` and `open` (those that hash to
    /// `open` stay queued too: nobody accepts yet), closes `closing`, and checks every
    /// connection reached `open` and none was reset.
    fn queued_move_on_close(closing: TcpListener, open: &TcpListener) {
        let addr = open.local_addr().unwrap();
        let clients: Vec<TcpStream> = (0..40).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(50));
        drop(closing);
        open.set_nonblocking(true).unwrap();
        let mut accepted = Vec::new();
        for _ in 0..200 {
            match open.accept() {
                Ok((s, _)) => accepted.push(s),
                Err(_) if accepted.len() == clients.len() => break,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        assert_eq!(
            accepted.len(),
            clients.len(),
            "every connection reached the open listener"
        );
        none_reset(clients, &mut accepted);
    }

    /// Each accepted connection writes a byte, each client writes one and reads its
    /// server's: none was reset.
    fn none_reset(clients: Vec<TcpStream>, accepted: &mut [TcpStream]) {
        for server in accepted.iter_mut() {
            server.write_all(b"y").unwrap();
        }
        for mut client in clients {
            client
                .set_read_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            client.write_all(b"x").unwrap();
            let mut b = [0u8; 1];
            assert_eq!(client.read(&mut b).unwrap(), 1, "not reset");
        }
    }

    /// Accepts what `listener` has queued (non-blocking): the connections.
    fn drain_queue(listener: &TcpListener) -> Vec<TcpStream> {
        listener.set_nonblocking(true).unwrap();
        std::iter::from_fn(|| listener.accept().ok().map(|(s, _)| s)).collect()
    }

    /// Steering: once a second instance steers its listeners, every new connection
    /// goes to them (spread over both), none to the first instance's; when the second
    /// instance's listeners close, new connections fall back to the first's.
    #[test]
    fn a_steering_successor_takes_every_new_connection() {
        in_new_netns(successor_takes_new_connections);
    }

    fn successor_takes_new_connections() {
        let (a0, a1) = two_listeners();
        let addr = a0.local_addr().unwrap();
        steer(&[a0.as_raw_fd(), a1.as_raw_fd()]).expect("steer the first instance");
        let (b0, b1) = (reuseport_listener(addr), reuseport_listener(addr));
        steer(&[b0.as_raw_fd(), b1.as_raw_fd()]).expect("steer the second instance");
        let clients: Vec<TcpStream> = (0..64).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(50));
        let old = drain_queue(&a0).len() + drain_queue(&a1).len();
        let (on_b0, on_b1) = (drain_queue(&b0).len(), drain_queue(&b1).len());
        assert_eq!(old, 0, "no new connection for the first instance");
        assert_eq!(on_b0 + on_b1, clients.len(), "every one on the second");
        assert!(
            on_b0 > 0 && on_b1 > 0,
            "spread over its listeners: {on_b0} {on_b1}"
        );
        drop((b0, b1));
        let later: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(50));
        let back = drain_queue(&a0).len() + drain_queue(&a1).len();
        assert_eq!(back, later.len(), "the first instance takes them again");
    }

    /// The steering program migrates: connections queued on a steered listener that
    /// closes move to a listener still open, none is reset, with `tcp_migrate_req` off.
    #[test]
    fn a_steered_listener_hands_its_queue_on_when_it_closes() {
        in_new_netns(steered_queue_moves);
    }

    fn steered_queue_moves() {
        let (a0, a1) = two_listeners();
        steer(&[a0.as_raw_fd(), a1.as_raw_fd()]).expect("steer");
        queued_move_on_close(a0, &a1);
    }
}
