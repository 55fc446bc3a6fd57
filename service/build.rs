//! Generates, for the tests only, clients from the API as the original
//! design wrote it (`tests/design/reservation.proto`: no package, lower-case
//! methods), as it stands and with `package reservation;` added, so tests
//! can call the server as those clients do. Everything goes to `OUT_DIR`.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let proto = "tests/design/reservation.proto";
    println!("cargo:rerun-if-changed={proto}");
    let out = PathBuf::from(env::var("OUT_DIR")?);
    let text = std::fs::read_to_string(proto)?;
    let packaged = text.replacen(
        "syntax = \"proto3\";",
        "syntax = \"proto3\";\npackage reservation;",
        1,
    );
    for (dir, source) in [("design", text), ("design_packaged", packaged)] {
        let dir = out.join(dir);
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("reservation.proto"), source)?;
        let fds = protox::compile([dir.join("reservation.proto")], [&dir])?;
        tonic_prost_build::configure()
            .build_client(true)
            .build_server(false)
            .out_dir(&dir)
            .compile_fds(fds)?;
    }
    Ok(())
}
