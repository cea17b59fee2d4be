//! Any text as the bootstrap clients file: an error or a file, never a panic.
#![no_main]
use dispatch_api::registry::BootstrapFile;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = toml::from_str::<BootstrapFile>(text);
    }
});
