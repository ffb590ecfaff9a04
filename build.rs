//! Link the gateway to the exact libpython it was built against.
//!
//! Without an rpath the dynamic loader may pick another libpython3.x (Debian ships one
//! in /usr/lib), and `sys.prefix` and the site-packages the app sees would silently be
//! that other Python's. We also record the interpreter's executable so the embedded
//! interpreter can compute the same `sys.prefix` as `python3` itself would.
//!
//! The extension module (feature `extension-module`, built by maturin) links no
//! libpython: it runs in the Python that imports it, so it gets no rpath either (a
//! build machine's path has no business in a wheel).

fn main() {
    let config = pyo3_build_config::get();
    let extension_module = std::env::var_os("CARGO_FEATURE_EXTENSION_MODULE").is_some();
    if !extension_module {
        if let Some(lib_dir) = config.lib_dir() {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{lib_dir}");
        }
    }
    let executable = config.executable().unwrap_or_default();
    println!("cargo:rustc-env=WSGI_GATEWAY_BUILD_PYTHON={executable}");
    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    println!("cargo:rerun-if-changed=build.rs");
}
