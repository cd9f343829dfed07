//! The echo skill's container binary: serves `say` over the protocol on stdin and stdout.

fn main() {
    skill_echo::skill().run()
}
