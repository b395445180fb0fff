//! Gives libedgespec.so its SONAME, `libedgespec.so.<major>`: programs
//! linked against it record that name and keep working across compatible
//! releases (`scripts/install-lib.sh` installs the versioned file and its links).

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libedgespec.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
