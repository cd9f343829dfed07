//! Argument parsing and dispatch, one module per subcommand. Each command returns its
//! exit code; errors are printed once, here, to stderr (and, with `--format json`, as an
//! [`ErrorReport`] on stdout).

#[macro_use]
pub(crate) mod output;
mod build;
mod cluster;
mod gc;
mod images;
mod invoke;
mod list;
mod lock;
mod mcp;
mod new;
mod progress;
mod ready;
mod remote;
mod serve;
mod session;
mod ship;
mod test;

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use skillhost::api::ErrorReport;
use skillhost::Error;

#[derive(Debug, Parser)]
#[command(
    name = "skillhost",
    version,
    about = "Run untrusted skills in hardened Docker containers"
)]
pub(crate) struct Args {
    /// A directory of skills; repeat for several. Default: ./skills
    #[arg(
        long = "skills-dir",
        global = true,
        env = "SKILLHOST_SKILLS",
        value_delimiter = ':'
    )]
    skills_dirs: Vec<PathBuf>,
    /// Output for people, or JSON for programs (nothing but the result on stdout).
    #[arg(long, global = true, value_enum, default_value_t = Format::Human)]
    format: Format,
    #[command(subcommand)]
    command: Command,
}

/// What `skillhost schema` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SchemaOf {
    /// A skill's `skill.yaml`.
    Manifest,
}

/// Who reads stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    Human,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// List the skills found: version, content hash, whether the image is present.
    List(list::ListCli),
    /// Build or reuse the images of skills.
    Build(build::BuildCli),
    /// Start a skill from a template: manifest, Dockerfile, source, .dockerignore.
    New(new::NewCli),
    /// Run one action of a skill in a fresh hardened container.
    Invoke(invoke::InvokeCli),
    /// Run every example of the skills' manifests in the sandbox and check each result.
    Test(test::TestCli),
    /// Pin a deployment's images in a lock file (`--check`: tell whether the sources moved).
    Lock(lock::LockCli),
    /// Push a lock's images to a registry and record their digests in the lock.
    Push(ship::PushCli),
    /// Pull a lock's images by digest and check each against the lock.
    Pull(ship::PullCli),
    /// Write a lock's images and the lock to one bundle file, for hosts no registry reaches.
    Export(ship::ExportCli),
    /// Load a bundle's images after checking every one against its lock.
    Import(ship::ImportCli),
    /// Serve the skills over HTTP (unix socket, and TCP with tokens) until SIGTERM.
    Serve(Box<serve::ServeCli>),
    /// Sessions of a running `skillhost serve`: make, list and end them; copy files in and
    /// out (calls in one: `skillhost invoke - ACTION --session ID`).
    Session(session::SessionCli),
    /// Speak MCP on stdin and stdout: every skill action a tool, for an MCP client that
    /// starts servers as commands (see docs/mcp.md).
    Mcp(mcp::McpCli),
    /// Tell whether a running `skillhost serve` is ready (exit 0) or not (exit 3, and why).
    Ready(ready::ReadyCli),
    /// Make a bearer token for `serve --listen`: prints the token and its tokens-file entry.
    Token {
        /// A name for the caller (logged, never the token).
        name: String,
        /// Calls this token may run at once.
        #[arg(long)]
        max_in_flight: Option<usize>,
    },
    /// Remove leftover containers of dead hosts, and the images of the skills found (and
    /// of --lock's) that neither their current sources nor a given lock need.
    Gc(gc::GcCli),
    /// Print a JSON Schema: `manifest` is the schema of skill.yaml, for editors (also in
    /// docs/manifest.schema.json).
    Schema {
        /// What to print the schema of.
        what: SchemaOf,
    },
    /// Print a shell completion script, e.g. `skillhost completions bash >
    /// /etc/bash_completion.d/skillhost`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// The skillhost service of a Docker swarm, node by node (run on a manager).
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Base images built locally from Debian packages.
    Images {
        #[command(subcommand)]
        command: images::ImagesCommand,
    },
}

pub(crate) async fn run(args: Args) -> i32 {
    let format = args.format;
    let given_roots = args.skills_dirs.clone();
    let roots = if args.skills_dirs.is_empty() {
        vec![PathBuf::from("skills")]
    } else {
        args.skills_dirs
    };
    let result = match args.command {
        Command::Serve(cli) => {
            return match serve::run(given_roots, *cli, format).await {
                Ok(code) => code,
                Err(e) => failed(format, &e, e.exit_code()),
            };
        }
        Command::Ready(cli) => ready::run(cli, format).await,
        Command::Session(cli) => return session::run(cli, format).await,
        Command::Lock(cli) => lock::run(&roots, cli, format).await,
        Command::Push(cli) => ship::run_push(cli, format).await,
        Command::Pull(cli) => ship::run_pull(cli, format).await,
        Command::Export(cli) => ship::run_export(cli, format).await,
        Command::Import(cli) => ship::run_import(cli, format).await,
        Command::Token {
            name,
            max_in_flight,
        } => Ok(token(&name, max_in_flight)),
        Command::List(cli) => list::run(&roots, cli, format).await,
        Command::New(cli) => new::run(&given_roots, cli, format),
        Command::Build(cli) => build::run(&roots, cli, format).await,
        Command::Invoke(cli) => invoke::run(roots, cli, format).await,
        Command::Mcp(cli) => mcp::run(roots, cli).await,
        Command::Test(cli) => test::run(roots, cli, format).await,
        Command::Gc(cli) => gc::run(&roots, !given_roots.is_empty(), cli, format).await,
        Command::Completions { shell } => Ok(completions(shell)),
        Command::Schema {
            what: SchemaOf::Manifest,
        } => {
            out!("{}", skillhost::manifest::json_schema());
            Ok(skillhost::api::exit_code::OK)
        }
        Command::Images { command } => images::run(command, format).await,
        Command::Cluster { command } => cluster::run(command, format).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => failed(format, &e, e.exit_code()),
    }
}

/// Report a command's failure (as JSON on stdout too, with `--format json`); its code.
fn failed(format: Format, error: &dyn std::fmt::Display, code: i32) -> i32 {
    if format == Format::Json {
        output::json(&ErrorReport::new(error.to_string(), code));
    }
    errln!("error: {error}");
    code
}

/// `skillhost token NAME`: the token on stdout, the entry to add on stderr's side.
fn token(name: &str, max_in_flight: Option<usize>) -> i32 {
    let (token, entry) = skillhost::service::new_token(name, max_in_flight);
    errln!("# Give the caller this token (SKILLHOST_TOKEN); it is not stored anywhere.");
    outln!("{token}");
    errln!("# Add this entry to the tokens file (--tokens); it holds only the token's hash:");
    err!("{entry}");
    skillhost::api::exit_code::OK
}

/// `skillhost completions SHELL`: the script on stdout, generated from the parser itself.
fn completions(shell: clap_complete::Shell) -> i32 {
    use clap::CommandFactory;
    let mut command = Args::command();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, "skillhost", &mut script);
    out!("{}", String::from_utf8_lossy(&script));
    skillhost::api::exit_code::OK
}

/// The error of a command whose request itself is wrong.
fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}
