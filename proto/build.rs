//! Compiles `inventory/v1/*.proto` with protox (pure Rust, so no system `protoc` is needed),
//! generates the prost messages and tonic stubs from the resulting descriptor set, and writes
//! the encoded descriptor set to `OUT_DIR` for gRPC reflection. prost-build ignores
//! `file_descriptor_set_path` on the `compile_fds` path, hence the explicit write.

use prost::Message;
use std::path::PathBuf;

const PROTOS: &[&str] = &["inventory/v1/inventory.proto"];
const INCLUDES: &[&str] = &["."];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // protox prints no rerun-if-changed lines of its own.
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    println!("cargo:rerun-if-changed=build.rs");

    let fds = protox::compile(PROTOS, INCLUDES)?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("inventory_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        // See src/codec.rs: smaller first buffers for the many small messages.
        .codec_path("crate::codec::SmallBufferCodec")
        // See src/sellable.rs: skus decoded without a copy each.
        .extern_path(
            ".inventory.v1.CheckSellableRequest",
            "crate::sellable::CheckSellableRequest",
        )
        .compile_fds(fds)?;
    Ok(())
}
