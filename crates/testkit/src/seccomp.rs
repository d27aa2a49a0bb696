//! A seccomp filter for a child process that refuses io_uring the way container
//! runtimes' default profiles do (`io_uring_setup`, `io_uring_enter` and
//! `io_uring_register` fail with EPERM; everything else is allowed), so tests can
//! run the server where io_uring is blocked without a container.

use std::os::unix::process::CommandExt;
use std::process::Command;

/// seccomp return values (linux/seccomp.h).
const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
/// Classic BPF opcodes (linux/filter.h): load a word at an absolute offset, jump if
/// equal to a constant, return a constant.
const BPF_LD_W_ABS: u16 = 0x20;
const BPF_JEQ_K: u16 = 0x15;
const BPF_RET_K: u16 = 0x06;

/// Makes `command`'s process (before it runs the program) set no_new_privs and
/// install the filter; `/proc/<pid>/status` then says `Seccomp: 2`.
pub fn deny_io_uring(command: &mut Command) {
    let nr = |n: libc::c_long| u32::try_from(n).expect("syscall number");
    let statement = |code, k| libc::sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    };
    let jump_if = |k, jt| libc::sock_filter {
        code: BPF_JEQ_K,
        jt,
        jf: 0,
        k,
    };
    // seccomp_data.nr is at offset 0; any of the three → ERRNO(EPERM), else allow.
    let program: Vec<libc::sock_filter> = vec![
        statement(BPF_LD_W_ABS, 0),
        jump_if(nr(libc::SYS_io_uring_setup), 3),
        jump_if(nr(libc::SYS_io_uring_enter), 2),
        jump_if(nr(libc::SYS_io_uring_register), 1),
        statement(BPF_RET_K, SECCOMP_RET_ALLOW),
        statement(BPF_RET_K, SECCOMP_RET_ERRNO | libc::EPERM as u32),
    ];
    // SAFETY: the closure runs in the forked child before exec; it only calls
    // prctl (async-signal-safe) with a program built before the fork, which lives
    // as long as the Command.
    unsafe {
        command.pre_exec(move || {
            let prog = libc::sock_fprog {
                len: program.len() as u16,
                filter: program.as_ptr() as *mut libc::sock_filter,
            };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}
