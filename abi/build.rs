//! Compiles `protos/reservation.proto` with a pure-Rust protobuf compiler, so
//! building needs no system `protoc`. Everything is written to `OUT_DIR`.

use std::{env, error::Error, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn Error>> {
    let proto = "protos/reservation.proto";
    println!("cargo:rerun-if-changed={proto}");

    let fds = protox::compile([proto], ["protos"])?;
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    // Served by gRPC server reflection.
    std::fs::write(
        out_dir.join("reservation_descriptor.bin"),
        fds.encode_to_vec(),
    )?;

    tonic_prost_build::configure()
        .codec_path("crate::codec::ProstCodec")
        .build_client(true)
        .build_server(true)
        .compile_fds(fds)?;
    Ok(())
}
