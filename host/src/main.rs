/// jemalloc instead of glibc's malloc: a stanza is often allocated on one worker thread and
/// freed on another (a reader parses it, a writer or a plugin's caller drops it), and glibc
/// serialises those frees on arena locks (28% of the server's CPU on the plugin path in
/// `perf`); jemalloc's per-thread caches do not (docs/benchmarks.md, 2026-12-02).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Two arenas for a server that mostly runs on a couple of worker threads (fewer
/// half-empty pages per idle connection), and freed pages returned within a second by
/// jemalloc's background thread instead of kept for reuse.
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8] = b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true\0";

fn main() -> std::process::ExitCode {
    poolxmpp::cli::main()
}
