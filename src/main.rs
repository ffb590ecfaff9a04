//! The `wsgi-gateway` binary: parse the flags, run the library.

use clap::Parser;

/// mimalloc: the I/O thread allocates per request (hyper buffers, boxed futures), and
/// glibc's malloc showed up at about 5% of its time in profiles.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    wsgi_gateway::run(wsgi_gateway::cli::Cli::parse())
}
