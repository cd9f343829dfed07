fn main() {
    skill_echo::skill().run()
}
