//! The `wsgi-gateway` binary: hand the command line to the library.

/// mimalloc: the I/O thread allocates per request (hyper buffers, boxed futures), and
/// glibc's malloc showed up at about 5% of its time in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wsgi_gateway::main_with_args(std::env::args_os().collect())
}
