//! Executor pool and placement, listeners, the per-core query loop, shutdown.
