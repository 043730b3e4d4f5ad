//! The `auth-service` binary: parse the command line and run the command.

/// jemalloc: request handling allocates and frees many small blocks across threads, where
/// glibc's allocator spent a fifth of the CPU time of the token routes (arena locks and
/// fastbin consolidation), and jemalloc keeps the resident set lower than mimalloc did.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read once at start-up: freed pages go back to the system after about a
/// second (instead of ten), so an idle hashing thread's Argon2 memory leaves the resident set
/// soon after the thread frees it.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8; 37] = b"dirty_decay_ms:1000,muzzy_decay_ms:0\0";

fn main() -> std::process::ExitCode {
    auth_service::cli::main()
}
