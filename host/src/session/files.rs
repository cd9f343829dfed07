//! A session's files, through skillhost's init running `--files` in the session's keeper
//! (see `init/src/files.rs`): the host never opens a path the skill could have placed a
//! link, a FIFO or a device at. This side checks paths first (so a bad one is refused
//! without an exec), bounds every transfer, and turns the helper's answers into
//! [`FileError`]s.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use skillhost_api::{codes, FileEntry, FileList};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::engine::containers::{CallError, Chunk, Output};
use crate::engine::Containers;
use crate::vocab::INIT_PATH;

/// Most entries a listing returns.
pub const MAX_LISTED: usize = 10_000;
/// Most bytes of a listing's JSON read from the helper.
const MAX_LISTING_BYTES: usize = 8 << 20;
/// Most bytes of the helper's stderr kept for a message.
const MAX_STDERR: usize = 4096;
/// How long the helper may take to answer once it has its input: it reads or writes one
/// file of a tmpfs, or lists one.
const ANSWER_BOUND: std::time::Duration = std::time::Duration::from_secs(60);

/// A failed file operation: a [`codes::files`] code (or `unknown_session`,
/// `engine_error`, `host_shutting_down`) and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} ({code})")]
pub struct FileError {
    /// What kind of failure, e.g. `file_not_found`.
    pub code: &'static str,
    /// What was wrong, naming the path.
    pub message: String,
}

impl FileError {
    pub(crate) fn new(code: &'static str, message: impl Into<String>) -> Self {
        FileError {
            code,
            message: message.into(),
        }
    }

    fn engine(what: &str, e: &CallError) -> Self {
        FileError::new(codes::ENGINE_ERROR, format!("{what}: {e}"))
    }
}

/// A file being downloaded: its size and permission bits, then its bytes.
pub struct Download {
    /// Its length in bytes: the stream yields exactly this many.
    pub size: u64,
    /// Its permission bits (set-id bits never included).
    pub mode: u32,
    /// Its content.
    pub body: Pin<Box<dyn Stream<Item = Result<Bytes, FileError>> + Send>>,
}

impl std::fmt::Debug for Download {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Download")
            .field("size", &self.size)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Download {
    /// The whole content, in memory.
    pub async fn bytes(mut self) -> Result<Vec<u8>, FileError> {
        let mut all = Vec::with_capacity(self.size.min(64 << 20) as usize);
        while let Some(chunk) = self.body.next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all)
    }
}

/// The same checks the helper makes, here first: a relative path of plain components.
pub(crate) fn check_path(path: &str) -> Result<(), FileError> {
    let invalid = |why: &str| FileError::new(codes::files::INVALID_PATH, format!("{path:?} {why}"));
    if path.is_empty() || path.len() > 4096 {
        return Err(invalid("must have 1 to 4096 bytes"));
    }
    if path.starts_with('/') {
        return Err(invalid("is absolute; give a path inside the workspace"));
    }
    if path.contains('\0') {
        return Err(invalid("holds a NUL byte"));
    }
    for part in path.split('/') {
        match part {
            "" => return Err(invalid("has an empty component (`//` or a trailing `/`)")),
            "." | ".." => return Err(invalid("has a `.` or `..` component")),
            p if p.len() > 255 => return Err(invalid("has a component longer than 255 bytes")),
            _ => {}
        }
    }
    Ok(())
}

/// The helper's first line.
#[derive(Debug, Deserialize, PartialEq, Eq)]
struct Header {
    ok: bool,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    mode: Option<u32>,
    #[serde(default)]
    truncated: Option<bool>,
}

/// The helper's failure in the caller's terms.
fn refused(header: &Header) -> FileError {
    let code = match header.code.as_deref() {
        Some("not_found") => codes::files::NOT_FOUND,
        Some("not_a_file") => codes::files::NOT_A_FILE,
        Some("too_large") => codes::files::TOO_LARGE,
        Some("no_space") => codes::files::WORKSPACE_FULL,
        Some("invalid_path") => codes::files::INVALID_PATH,
        Some("not_empty") => codes::files::NOT_EMPTY,
        _ => codes::files::UNREADABLE,
    };
    FileError::new(code, header.message.clone().unwrap_or_default())
}

fn parse_header(line: &[u8]) -> Result<Header, FileError> {
    serde_json::from_slice(line).map_err(|e| {
        FileError::new(
            codes::ENGINE_ERROR,
            format!(
                "the workspace's file helper answered {:?}, not its header: {e}",
                String::from_utf8_lossy(&line[..line.len().min(200)])
            ),
        )
    })
}

/// One run of the helper in a session's keeper.
struct Helper {
    output: Output,
    /// stdout received after the header line.
    rest: Vec<u8>,
    stderr: Vec<u8>,
}

impl Helper {
    /// Start the helper with `args` in `keeper` as `user`; stdin is handed back open.
    async fn start(
        engine: &Containers,
        keeper: &str,
        user: &str,
        args: &[&str],
    ) -> Result<(Helper, crate::engine::containers::Input), FileError> {
        let command: Vec<String> = [INIT_PATH, "--files"]
            .iter()
            .chain(args)
            .map(|s| s.to_string())
            .collect();
        let io = engine
            .exec(keeper, &command, user)
            .await
            .map_err(|e| FileError::engine("starting the workspace's file helper", &e))?;
        let helper = Helper {
            output: io.output,
            rest: Vec::new(),
            stderr: Vec::new(),
        };
        Ok((helper, io.input))
    }

    /// Read up to the header line, waiting at most [`ANSWER_BOUND`]; what follows it
    /// stays in `rest`.
    async fn header(&mut self) -> Result<Header, FileError> {
        tokio::time::timeout(ANSWER_BOUND, self.read_header())
            .await
            .unwrap_or_else(|_| {
                Err(FileError::new(
                    codes::ENGINE_ERROR,
                    format!(
                        "the workspace's file helper did not answer within {} s",
                        ANSWER_BOUND.as_secs()
                    ),
                ))
            })
    }

    async fn read_header(&mut self) -> Result<Header, FileError> {
        let mut line = Vec::new();
        loop {
            match self.output.next().await {
                Some(Ok(Chunk::Stdout(bytes))) => {
                    line.extend_from_slice(&bytes);
                    if let Some(end) = line.iter().position(|b| *b == b'\n') {
                        self.rest = line.split_off(end + 1);
                        line.truncate(end);
                        return parse_header(&line);
                    }
                    if line.len() > 64 << 10 {
                        return parse_header(&line);
                    }
                }
                Some(Ok(Chunk::Stderr(bytes))) => {
                    let room = MAX_STDERR.saturating_sub(self.stderr.len());
                    self.stderr
                        .extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
                Some(Err(e)) => {
                    return Err(FileError::engine("reading the file helper's answer", &e))
                }
                None => {
                    return Err(FileError::new(
                        codes::ENGINE_ERROR,
                        format!(
                            "the workspace's file helper ended without an answer: {}",
                            String::from_utf8_lossy(&self.stderr).trim()
                        ),
                    ))
                }
            }
        }
    }

    /// Everything left on stdout, up to `max` bytes.
    async fn rest(mut self, max: usize) -> Result<Vec<u8>, FileError> {
        let mut all = std::mem::take(&mut self.rest);
        while let Some(chunk) = self.output.next().await {
            match chunk {
                Ok(Chunk::Stdout(bytes)) => {
                    all.extend_from_slice(&bytes);
                    if all.len() > max {
                        return Err(FileError::new(
                            codes::files::TOO_LARGE,
                            format!("the listing is larger than {max} bytes"),
                        ));
                    }
                }
                Ok(Chunk::Stderr(_)) => {}
                Err(e) => return Err(FileError::engine("reading the file helper's answer", &e)),
            }
        }
        Ok(all)
    }
}

/// The helper's header when it succeeded, else its refusal.
fn check(header: Header) -> Result<Header, FileError> {
    if header.ok {
        Ok(header)
    } else {
        Err(refused(&header))
    }
}

/// Read `path`, at most `max` bytes.
pub(crate) async fn read(
    engine: &Containers,
    keeper: &str,
    user: &str,
    path: &str,
    max: u64,
) -> Result<Download, FileError> {
    check_path(path)?;
    let max_text = max.to_string();
    let (mut helper, mut input) =
        Helper::start(engine, keeper, user, &["read", path, &max_text]).await?;
    let _ = input.shutdown().await;
    let header = check(helper.header().await?)?;
    let size = header.size.unwrap_or(0);
    let mode = header.mode.unwrap_or(0);
    let first = std::mem::take(&mut helper.rest);
    let body = Framed {
        output: helper.output,
        pending: (!first.is_empty()).then(|| Bytes::from(first)),
        left: size,
        _input: input,
    };
    Ok(Download {
        size,
        mode,
        body: Box::pin(body),
    })
}

/// The content after the header, exactly `left` bytes of it.
struct Framed {
    output: Output,
    pending: Option<Bytes>,
    left: u64,
    /// Held so the exec's connection stays whole until the body is read.
    _input: crate::engine::containers::Input,
}

impl Stream for Framed {
    type Item = Result<Bytes, FileError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            let bytes = match self.pending.take() {
                Some(bytes) => bytes,
                None => match self.output.poll_next_unpin(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(Chunk::Stdout(bytes)))) => bytes,
                    Poll::Ready(Some(Ok(Chunk::Stderr(_)))) => continue,
                    Poll::Ready(Some(Err(e))) => {
                        self.left = 0;
                        return Poll::Ready(Some(Err(FileError::engine(
                            "reading the file from the workspace",
                            &e,
                        ))));
                    }
                    Poll::Ready(None) => {
                        let left = self.left;
                        self.left = 0;
                        return Poll::Ready(Some(Err(FileError::new(
                            codes::ENGINE_ERROR,
                            format!("the file ended {left} bytes short of its size"),
                        ))));
                    }
                },
            };
            let take = (bytes.len() as u64).min(self.left) as usize;
            self.left -= take as u64;
            if take > 0 {
                return Poll::Ready(Some(Ok(bytes.slice(..take))));
            }
        }
    }
}

/// Write `body` to `path` (replacing it once complete), at most `max` bytes; the size
/// written.
pub(crate) async fn write(
    engine: &Containers,
    keeper: &str,
    user: &str,
    path: &str,
    max: u64,
    mut body: impl AsyncRead + Unpin + Send,
) -> Result<u64, FileError> {
    check_path(path)?;
    let max_text = max.to_string();
    let (mut helper, mut input) =
        Helper::start(engine, keeper, user, &["write", path, &max_text]).await?;
    let mut sent: u64 = 0;
    let mut buffer = vec![0u8; 64 << 10];
    let mut too_large = false;
    loop {
        let n = body.read(&mut buffer).await.map_err(|e| {
            FileError::new(
                codes::files::UNREADABLE,
                format!("reading the upload for {path}: {e}"),
            )
        })?;
        if n == 0 {
            break;
        }
        if sent + n as u64 > max {
            // Enough for the helper to see more than it allows, so it removes what it
            // wrote and says so, without waiting for the rest.
            let room = (max + 1 - sent) as usize;
            let _ = input.write_all(&buffer[..room]).await;
            too_large = true;
            break;
        }
        sent += n as u64;
        if input.write_all(&buffer[..n]).await.is_err() {
            // The helper stopped reading: its header says why.
            break;
        }
    }
    if too_large {
        let _ = input.shutdown().await;
        let _ = helper.header().await;
        return Err(FileError::new(
            codes::files::TOO_LARGE,
            format!("{path}: an upload may have at most {max} bytes"),
        ));
    }
    let _ = input.shutdown().await;
    let header = check(helper.header().await?)?;
    Ok(header.size.unwrap_or(sent))
}

/// Remove the file, link or empty directory at `path`.
pub(crate) async fn delete(
    engine: &Containers,
    keeper: &str,
    user: &str,
    path: &str,
) -> Result<(), FileError> {
    check_path(path)?;
    let (mut helper, mut input) = Helper::start(engine, keeper, user, &["delete", path]).await?;
    let _ = input.shutdown().await;
    check(helper.header().await?).map(drop)
}

/// Every entry of the workspace, up to [`MAX_LISTED`].
pub(crate) async fn list(
    engine: &Containers,
    keeper: &str,
    user: &str,
) -> Result<FileList, FileError> {
    let max = MAX_LISTED.to_string();
    let (mut helper, mut input) = Helper::start(engine, keeper, user, &["list", &max]).await?;
    let _ = input.shutdown().await;
    let header = check(helper.header().await?)?;
    let text = helper.rest(MAX_LISTING_BYTES).await?;
    parse_listing(&text, header.truncated.unwrap_or(false))
}

fn parse_listing(text: &[u8], truncated: bool) -> Result<FileList, FileError> {
    let mut files = Vec::new();
    for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
        let entry: FileEntry = serde_json::from_slice(line).map_err(|e| {
            FileError::new(
                codes::ENGINE_ERROR,
                format!("the workspace's file helper listed an entry that does not read: {e}"),
            )
        })?;
        files.push(entry);
    }
    Ok(FileList::new(files, truncated))
}

#[cfg(test)]
mod tests {
    use super::*;
    use skillhost_api::FileKind;

    #[test]
    fn paths_are_checked_before_any_exec() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/",
            "./a",
            "a\0",
        ] {
            assert_eq!(
                check_path(bad).unwrap_err().code,
                codes::files::INVALID_PATH,
                "{bad:?}"
            );
        }
        check_path("data/out.csv").unwrap();
        check_path("..hidden/x").unwrap();
    }

    #[test]
    fn the_helpers_refusals_keep_their_meaning() {
        let header = |code: &str| Header {
            ok: false,
            code: Some(code.into()),
            message: Some("m".into()),
            size: None,
            mode: None,
            truncated: None,
        };
        assert_eq!(refused(&header("not_found")).code, codes::files::NOT_FOUND);
        assert_eq!(
            refused(&header("not_a_file")).code,
            codes::files::NOT_A_FILE
        );
        assert_eq!(
            refused(&header("no_space")).code,
            codes::files::WORKSPACE_FULL
        );
        assert_eq!(refused(&header("io")).code, codes::files::UNREADABLE);
        assert_eq!(
            parse_header(b"{\"ok\":true,\"size\":3,\"mode\":420}")
                .unwrap()
                .size,
            Some(3)
        );
        assert_eq!(
            parse_header(b"garbage").unwrap_err().code,
            codes::ENGINE_ERROR
        );
    }

    #[test]
    fn a_listing_reads_line_by_line() {
        let text = b"{\"path\":\"a\",\"kind\":\"directory\",\"size\":60,\"mode\":493,\"modified_ms\":1}\n{\"path\":\"a/l\",\"kind\":\"symlink\",\"size\":11,\"mode\":511,\"modified_ms\":2}\n";
        let listing = parse_listing(text, true).unwrap();
        assert!(listing.truncated);
        assert_eq!(listing.files[1].kind, FileKind::Symlink);
        assert_eq!(listing.files[0].mode, 0o755);
    }

    #[tokio::test]
    async fn a_download_yields_exactly_its_size() {
        let chunks = vec![
            Ok(Chunk::Stdout(Bytes::from_static(b"cd"))),
            Ok(Chunk::Stderr(Bytes::from_static(b"log"))),
            Ok(Chunk::Stdout(Bytes::from_static(b"efgh"))),
        ];
        let framed = Framed {
            output: Box::pin(futures_util::stream::iter(chunks)),
            pending: Some(Bytes::from_static(b"ab")),
            left: 5,
            _input: Box::pin(tokio::io::sink()),
        };
        let download = Download {
            size: 5,
            mode: 0o644,
            body: Box::pin(framed),
        };
        assert_eq!(download.bytes().await.unwrap(), b"abcde");
    }
}
