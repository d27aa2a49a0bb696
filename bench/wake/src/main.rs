//! What one wake-up costs the thread that is woken, measured as that thread's CPU
//! time (`/proc/thread-self/schedstat`, the accounting `bench/compare.sh` uses for
//! CPU per query). Three ways to be woken, all pinned to core 0:
//!
//! - `cross GAP_NS`: a thread blocks in `read` on an eventfd; a writer on core 1
//!   spins and writes every GAP_NS (a datagram from another core, without the
//!   network stack);
//! - `sleep NS`: `clock_nanosleep` of NS in a loop, timer slack 1 ns (a pause that
//!   arms a high-resolution timer);
//! - `arm NS`: a timerfd armed NS ahead and disarmed again, no sleeping (what arming
//!   the earliest timer costs by itself).
//!
//! `--idle-poll` holds `/dev/cpu_dma_latency` at 0 for the run, so an idle core
//! polls instead of halting (root; the kernel drops the request when the file is
//! closed at exit).
//!
//! Usage: `bench-wake [--idle-poll] cross|sleep|arm NS [SECONDS]`; one line of
//! `key=value` pairs on stdout.

use std::fs::File;
use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn main() {
    if let Err(err) = run() {
        eprintln!("bench-wake: {err}");
        std::process::exit(2);
    }
}

fn run() -> Result<(), String> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let idle_poll = args.first().is_some_and(|a| a == "--idle-poll");
    if idle_poll {
        args.remove(0);
    }
    let usage = "usage: bench-wake [--idle-poll] cross|sleep|arm NS [SECONDS]";
    let (Some(mode), Some(ns)) = (args.first(), args.get(1)) else {
        return Err(usage.into());
    };
    let ns: u64 = ns.parse().map_err(|e| format!("NS {ns:?}: {e}"))?;
    let secs: f64 = match args.get(2) {
        Some(s) => s.parse().map_err(|e| format!("SECONDS {s:?}: {e}"))?,
        None => 3.0,
    };
    if !(ns > 0 && ns < 1_000_000_000 && secs > 0.0 && secs <= 60.0) {
        return Err("NS must be within (0, 1e9) and SECONDS within (0, 60]".into());
    }
    let _qos = match idle_poll {
        true => Some(hold_idle_poll()?),
        false => None,
    };
    let run_for = Duration::from_secs_f64(secs);
    let line = match mode.as_str() {
        "cross" => cross(ns, run_for)?,
        "sleep" => sleep(ns, run_for)?,
        "arm" => arm(ns, run_for)?,
        _ => return Err(usage.into()),
    };
    println!("mode={mode} ns={ns} idle_poll={idle_poll} {line}");
    Ok(())
}

/// Asks cpuidle for zero exit latency (only the polling state) while the file is open.
fn hold_idle_poll() -> Result<File, String> {
    let mut file = File::options()
        .write(true)
        .open("/dev/cpu_dma_latency")
        .map_err(|e| format!("/dev/cpu_dma_latency: {e}"))?;
    file.write_all(&0i32.to_ne_bytes())
        .map_err(|e| format!("/dev/cpu_dma_latency: {e}"))?;
    Ok(file)
}

fn pin(core: usize) -> Result<(), String> {
    // SAFETY: a zeroed cpu_set_t is empty; CPU_SET stays within it for core < 1024.
    let rc = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set)
    };
    match rc {
        0 => Ok(()),
        _ => Err(format!(
            "pin to core {core}: {}",
            std::io::Error::last_os_error()
        )),
    }
}

/// The calling thread's CPU time (ns) and voluntary context switches.
fn thread_usage() -> Result<(u64, u64), String> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").map_err(|e| e.to_string())?;
    let cpu = stat
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .ok_or("unreadable schedstat")?;
    let status = std::fs::read_to_string("/proc/thread-self/status").map_err(|e| e.to_string())?;
    let switches = status
        .lines()
        .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or("unreadable status")?;
    Ok((cpu, switches))
}

fn cross(gap_ns: u64, run_for: Duration) -> Result<String, String> {
    // SAFETY: plain eventfd creation; the fd is closed at exit.
    let efd = unsafe { libc::eventfd(0, 0) };
    if efd < 0 {
        return Err(format!("eventfd: {}", std::io::Error::last_os_error()));
    }
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let done = done.clone();
        std::thread::spawn(move || -> Result<(u64, u64, u64), String> {
            pin(0)?;
            let before = thread_usage()?;
            let mut reads = 0u64;
            let mut value = 0u64;
            while !done.load(Ordering::Relaxed) {
                // SAFETY: reads 8 bytes into a u64 we own.
                let n = unsafe { libc::read(efd, (&mut value as *mut u64).cast(), 8) };
                reads += u64::from(n == 8);
            }
            let after = thread_usage()?;
            Ok((reads, after.0 - before.0, after.1 - before.1))
        })
    };
    pin(1)?;
    std::thread::sleep(Duration::from_millis(100));
    let one = 1u64;
    let write = || {
        // SAFETY: writes 8 bytes from a u64 we own.
        unsafe { libc::write(efd, (&one as *const u64).cast(), 8) };
    };
    let start = Instant::now();
    let gap = Duration::from_nanos(gap_ns);
    let mut next = start;
    let mut writes = 0u64;
    while start.elapsed() < run_for {
        next += gap;
        while Instant::now() < next {
            std::hint::spin_loop();
        }
        write();
        writes += 1;
    }
    done.store(true, Ordering::Relaxed);
    write();
    let (reads, cpu_ns, wakes) = reader.join().map_err(|_| "reader panicked")??;
    let wakes = wakes.max(1);
    Ok(format!(
        "writes={writes} reads={reads} wakes={wakes} cpu_us_per_wake={:.2}",
        cpu_ns as f64 / 1e3 / wakes as f64
    ))
}

fn sleep(ns: u64, run_for: Duration) -> Result<String, String> {
    pin(0)?;
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong) };
    let before = thread_usage()?;
    let start = Instant::now();
    let mut wakes = 0u64;
    while start.elapsed() < run_for {
        std::thread::sleep(Duration::from_nanos(ns));
        wakes += 1;
    }
    let after = thread_usage()?;
    Ok(format!(
        "wakes={wakes} period_us={:.1} cpu_us_per_wake={:.2}",
        start.elapsed().as_secs_f64() * 1e6 / wakes as f64,
        (after.0 - before.0) as f64 / 1e3 / wakes as f64
    ))
}

fn arm(ns: u64, run_for: Duration) -> Result<String, String> {
    pin(0)?;
    // SAFETY: plain timerfd creation; the fd is closed at exit.
    let tfd = unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, 0) };
    if tfd < 0 {
        return Err(format!(
            "timerfd_create: {}",
            std::io::Error::last_os_error()
        ));
    }
    let spec = |ns: u64| libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: libc::timespec {
            tv_sec: 0,
            tv_nsec: ns as libc::c_long,
        },
    };
    let (on, off) = (spec(ns), spec(0));
    let before = thread_usage()?;
    let start = Instant::now();
    let mut rounds = 0u64;
    while start.elapsed() < run_for {
        // SAFETY: valid fd and itimerspec values; the old value is not wanted.
        unsafe {
            libc::timerfd_settime(tfd, 0, &on, std::ptr::null_mut());
            libc::timerfd_settime(tfd, 0, &off, std::ptr::null_mut());
        }
        rounds += 1;
    }
    let after = thread_usage()?;
    Ok(format!(
        "rounds={rounds} cpu_us_per_arm_and_cancel={:.2}",
        (after.0 - before.0) as f64 / 1e3 / rounds as f64
    ))
}
