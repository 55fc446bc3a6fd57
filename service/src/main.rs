fn main() {
    eprintln!("rsvp-server: not built yet");
    std::process::exit(1);
}
