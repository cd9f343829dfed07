//! The C ABI a skill exports from a `cdylib` so a host can run it in process (native
//! mode). Native mode is **unsandboxed**: the skill runs with the host's rights, in the
//! host's memory. It is for trusted skills in development and tests only.
//!
//! ```ignore
//! fn skill() -> skill_sdk::Skill { skill_sdk::Skill::new().action("say", say) }
//! skill_sdk::export_native!(skill);
//! ```
//!
//! The host calls [`ABI_VERSION_SYMBOL`] before anything else and refuses a library whose
//! version differs from [`ABI_VERSION`]. A request is one protocol line in; the answer is
//! the frames the container would have written, progress lines then the result line.
//! The answer is allocated by the skill and must be given back to [`FREE_SYMBOL`].

// A C ABI takes and returns raw pointers; each `unsafe` below states what it relies on.
#![allow(unsafe_code)]

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::protocol::{codes, ErrorBody, Frame, ResultFrame};
use crate::Skill;

/// Bumped on any change to the functions below or their contracts.
pub const ABI_VERSION: u32 = 1;
/// `extern "C" fn() -> u32`
pub const ABI_VERSION_SYMBOL: &[u8] = b"skillhost_native_abi_version";
/// `extern "C" fn(request: *const u8, request_len: usize, answer_len: *mut usize) -> *mut u8`
pub const INVOKE_SYMBOL: &[u8] = b"skillhost_native_invoke";
/// `extern "C" fn(answer: *mut u8, answer_len: usize)`
pub const FREE_SYMBOL: &[u8] = b"skillhost_native_free";

/// Export the native C ABI for the skill that `$make` builds.
#[macro_export]
macro_rules! export_native {
    ($make:path) => {
        /// The native ABI version this library speaks; the host checks it first.
        #[no_mangle]
        pub extern "C" fn skillhost_native_abi_version() -> u32 {
            $crate::native::ABI_VERSION
        }

        /// Answer one request line with the skill's frames, allocated here.
        ///
        /// # Safety
        /// `request` points to `request_len` readable bytes; `answer_len` is writable.
        #[no_mangle]
        pub unsafe extern "C" fn skillhost_native_invoke(
            request: *const u8,
            request_len: usize,
            answer_len: *mut usize,
        ) -> *mut u8 {
            $crate::native::invoke($make, request, request_len, answer_len)
        }

        /// Give back an answer of `skillhost_native_invoke`.
        ///
        /// # Safety
        /// `answer` and `answer_len` come from one `skillhost_native_invoke` call.
        #[no_mangle]
        pub unsafe extern "C" fn skillhost_native_free(answer: *mut u8, answer_len: usize) {
            $crate::native::free(answer, answer_len)
        }
    };
}

/// The body of the exported invoke function. Never unwinds across the boundary: a panic
/// anywhere, including while building the skill, becomes an error result.
///
/// # Safety
/// `request` points to `request_len` readable bytes; `answer_len` is writable.
pub unsafe fn invoke(
    make: fn() -> Skill,
    request: *const u8,
    request_len: usize,
    answer_len: *mut usize,
) -> *mut u8 {
    // SAFETY: the caller guarantees the request buffer.
    let request = unsafe { std::slice::from_raw_parts(request, request_len) };
    let answer = catch_unwind(AssertUnwindSafe(|| match std::str::from_utf8(request) {
        Ok(line) => make().answer(line),
        Err(e) => error_line(format!("request is not UTF-8: {e}")),
    }))
    .unwrap_or_else(|_| error_line("the skill panicked outside an action".into()));
    let answer = answer.into_boxed_slice();
    // SAFETY: the caller guarantees `answer_len` is writable.
    unsafe { *answer_len = answer.len() };
    Box::into_raw(answer).cast()
}

/// The body of the exported free function.
///
/// # Safety
/// `answer` and `answer_len` come from one [`invoke`] call and are freed once.
pub unsafe fn free(answer: *mut u8, answer_len: usize) {
    if answer.is_null() {
        return;
    }
    // SAFETY: rebuilt from exactly what `invoke` leaked.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(answer, answer_len)) });
}

fn error_line(message: String) -> Vec<u8> {
    let result = ResultFrame::err("", ErrorBody::new(codes::BAD_REQUEST, message));
    Frame::Result(result).to_line().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ActionError, Context, Request};
    use serde_json::{json, Value};

    fn skill() -> Skill {
        Skill::new()
            .action("say", |a: Value, ctx: &mut Context| {
                ctx.progress("half", Some(0.5));
                Ok::<_, ActionError>(a)
            })
            .action(
                "boom",
                |_: Value, _: &mut Context| -> Result<Value, ActionError> { panic!("boom") },
            )
    }

    fn call(request: &[u8]) -> Vec<Frame> {
        let mut len = 0usize;
        let text = unsafe {
            let ptr = invoke(skill, request.as_ptr(), request.len(), &mut len);
            let text = std::str::from_utf8(std::slice::from_raw_parts(ptr, len))
                .unwrap()
                .to_string();
            free(ptr, len);
            text
        };
        text.lines()
            .map(|l| Frame::parse_line(l).unwrap())
            .collect()
    }

    #[test]
    fn a_request_gets_its_progress_then_its_result() {
        let line = Request::new("n1", "say", json!({"x": 1})).to_line();
        let frames = call(line.as_bytes());
        assert!(matches!(&frames[0], Frame::Progress(p) if p.id == "n1"));
        match &frames[1] {
            Frame::Result(r) => assert_eq!(
                (r.id.as_str(), r.output.clone()),
                ("n1", Some(json!({"x": 1})))
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn panics_and_bad_bytes_become_error_results() {
        let line = Request::new("n2", "boom", json!({})).to_line();
        match call(line.as_bytes()).pop() {
            Some(Frame::Result(r)) => assert_eq!(r.error.unwrap().code, codes::PANIC),
            other => panic!("{other:?}"),
        }
        match call(&[0xff, 0xfe]).pop() {
            Some(Frame::Result(r)) => assert!(r.error.unwrap().message.contains("UTF-8")),
            other => panic!("{other:?}"),
        }
    }
}
