//! The MCP server's handler: `tools/list` from the catalog, `tools/call` run by a
//! [`Front`] (a host of its own on stdio, the service's gate on `/mcp`), with progress
//! notifications, cancellation, and one skillhost session per session-taking skill for
//! as long as the MCP session lasts.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, Extensions, Implementation, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{Peer, RequestContext};
use rmcp::{ErrorData as McpError, RoleServer, ServerHandler};
use serde_json::Value;
use skill_sdk::Progress;
use skillhost_api::tools::{split_tool_name, tool_definitions, ToolFormat};
use skillhost_api::{codes, InvocationResult, SessionRequest};
use tokio::sync::{mpsc, Mutex};

use super::results;
use crate::host::Host;
use crate::invoke::InvokeOptions;
use crate::vocab::ProgressCallback;

/// One tool call, as the handler hands it to its front end.
#[derive(Debug, Clone)]
pub(crate) struct ToolCall {
    pub(crate) skill: String,
    pub(crate) action: String,
    /// The skillhost session it runs in, if any.
    pub(crate) session: Option<String>,
    pub(crate) args: Value,
    pub(crate) options: InvokeOptions,
}

/// Where the handler's calls run: the admission and the owner of the sessions it opens
/// differ between a host of its own (stdio) and the service (`/mcp`, with its gate and
/// its callers' tokens).
pub(crate) trait Front: Send + Sync + 'static {
    /// The host calls run on.
    fn host(&self) -> &Arc<Host>;
    /// Who the request of `extensions` comes from, as a session's owner (`None`: the
    /// library's caller); an error when nobody is.
    fn owner(&self, extensions: &Extensions) -> Result<Option<String>, McpError>;
    /// Run `call` of `owner`, admitted as this front end admits calls.
    fn run(
        &self,
        extensions: &Extensions,
        owner: Option<String>,
        call: ToolCall,
    ) -> impl Future<Output = InvocationResult> + Send;
}

/// Every action of the host's skills as an MCP tool.
pub(crate) fn tools(host: &Host) -> Vec<Tool> {
    let skills = crate::tools::catalog_info(host.catalog());
    tool_definitions(&skills, ToolFormat::Mcp)
        .into_iter()
        .filter_map(
            |definition| match serde_json::from_value::<Tool>(definition) {
                Ok(tool) => Some(tool),
                Err(e) => {
                    tracing::warn!("a tool definition is not valid MCP and is left out: {e}");
                    None
                }
            },
        )
        .collect()
}

/// The handler of one MCP session (on stdio, the process's one).
pub(crate) struct McpServer<F: Front> {
    front: Arc<F>,
    tools: Arc<[Tool]>,
    /// Whether a request negotiated per request (MCP 2026-07-28, no session) still keeps
    /// skillhost sessions: true on stdio, where the process is the conversation.
    sessions_without_mcp_session: bool,
    conversation: Arc<Conversation>,
}

impl<F: Front> std::fmt::Debug for McpServer<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpServer")
            .field("tools", &self.tools.len())
            .finish_non_exhaustive()
    }
}

impl<F: Front> McpServer<F> {
    /// A handler for a new MCP session; cheap (the transport makes one per request to
    /// check headers), the skillhost sessions opened only when a call needs one.
    pub(crate) fn new(
        front: Arc<F>,
        tools: Arc<[Tool]>,
        sessions_without_mcp_session: bool,
    ) -> Self {
        let conversation = Arc::new(Conversation {
            host: front.host().clone(),
            sessions: Mutex::new(HashMap::new()),
        });
        McpServer {
            front,
            tools,
            sessions_without_mcp_session,
            conversation,
        }
    }

    /// Run `call`, in the skill's session of this conversation when the skill takes
    /// sessions and the request belongs to one; a session that ended (idle, lifetime) is
    /// replaced once, with a note for the model.
    async fn run(
        &self,
        extensions: &Extensions,
        owner: Option<String>,
        mut call: ToolCall,
        in_session: bool,
    ) -> Result<(InvocationResult, Option<&'static str>), rmcp::model::CallToolResult> {
        let takes_sessions = self
            .front
            .host()
            .catalog()
            .get(&call.skill)
            .is_some_and(|skill| skill.manifest.run.session.is_some());
        if !(takes_sessions && in_session) {
            return Ok((self.front.run(extensions, owner, call).await, None));
        }
        let id = self.conversation.session(&call.skill, &owner, None).await?;
        call.session = Some(id.clone());
        let mut retry = call.clone();
        let result = self.front.run(extensions, owner.clone(), call).await;
        let gone = result
            .error
            .as_ref()
            .is_some_and(|e| e.code == codes::UNKNOWN_SESSION);
        if !gone {
            return Ok((result, None));
        }
        retry.session = Some(
            self.conversation
                .session(&retry.skill, &owner, Some(&id))
                .await?,
        );
        let result = self.front.run(extensions, owner, retry).await;
        Ok((result, Some(SESSION_REPLACED)))
    }
}

/// Said to the model when its session had ended and a new one served the call.
const SESSION_REPLACED: &str = "The earlier session of this skill had ended (it was idle too long or reached its lifetime), so this call ran in a new one: variables and files from earlier calls are gone.";

/// Said to the model when the call cost a process session its interpreter.
const STATE_RESET: &str = "The session's process was restarted: variables from earlier calls are gone; its files are kept.";

impl<F: Front> ServerHandler for McpServer<F> {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("skillhost", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Each tool is one action of a skill run in a hardened, sandboxed container \
                 (`skill__action`). A tool error names its status and code: `rejected` \
                 (invalid_args) means fix the arguments; `timeout`, `memory_limit` and \
                 `skill_error` are the skill's own failures. Skills that take sessions \
                 (python, shell) keep variables and files from call to call.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        Ok(ListToolsResult::with_all_items(self.tools.to_vec()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.as_ref();
        let Some((skill, action)) =
            split_tool_name(name).filter(|_| self.tools.iter().any(|tool| tool.name == name))
        else {
            return Err(McpError::invalid_params(
                format!("no tool named {name:?}: tools/list gives every tool"),
                None,
            ));
        };
        let extensions = &context.extensions;
        let owner = self.front.owner(extensions)?;
        let in_session =
            self.sessions_without_mcp_session || context.meta.protocol_version().is_none();
        let (on_progress, progress) = progress_channel(&context);
        let mut options = InvokeOptions {
            id: Some(uuid::Uuid::new_v4().to_string()),
            ..InvokeOptions::default()
        };
        options.on_progress = on_progress;
        let call = ToolCall {
            skill: skill.to_string(),
            action: action.to_string(),
            session: None,
            args: results::arguments(request.arguments),
            options,
        };
        // Dropping the run (the client cancelled) removes the call's container.
        let run = async {
            let (result, ()) =
                tokio::join!(self.run(extensions, owner, call, in_session), progress);
            result
        };
        let tool = tokio::select! {
            ran = run => match ran {
                Ok((result, note)) => {
                    let reset = result.session.as_ref().is_some_and(|s| s.state_reset);
                    results::tool_result(&result, note.or(reset.then_some(STATE_RESET)))
                }
                Err(refused) => refused,
            },
            _ = context.ct.cancelled() => results::cancelled(),
        };
        Ok(tool.into())
    }
}

/// A progress callback for the call and the task that forwards its reports as progress
/// notifications, when the client sent a progress token; neither when it did not. The
/// task ends when the callback is dropped with the call.
fn progress_channel(
    context: &RequestContext<RoleServer>,
) -> (
    Option<ProgressCallback>,
    impl Future<Output = ()> + Send + 'static,
) {
    let token = context.meta.get_progress_token();
    let (sender, receiver) = mpsc::unbounded_channel::<Progress>();
    let callback: Option<ProgressCallback> = token.is_some().then(|| {
        let callback: ProgressCallback = Arc::new(move |progress: &Progress| {
            let _ = sender.send(progress.clone());
        });
        callback
    });
    let peer = context.peer.clone();
    (callback, forward_progress(token, receiver, peer))
}

async fn forward_progress(
    token: Option<rmcp::model::ProgressToken>,
    mut receiver: mpsc::UnboundedReceiver<Progress>,
    peer: Peer<RoleServer>,
) {
    let Some(token) = token else { return };
    let mut reports = 0.0_f64;
    let mut last = 0.0_f64;
    while let Some(progress) = receiver.recv().await {
        reports += 1.0;
        // MCP's progress only grows: a fraction as a percentage, else the reports so far.
        let (value, total) = match progress.fraction {
            Some(fraction) => ((fraction * 100.0).clamp(0.0, 100.0), Some(100.0)),
            None => (reports, None),
        };
        last = value.max(last);
        let mut param = ProgressNotificationParam::new(token.clone(), last);
        param.total = total;
        if !progress.message.is_empty() {
            param.message = Some(progress.message);
        }
        if peer.notify_progress(param).await.is_err() {
            return;
        }
    }
}

/// The skillhost sessions of one MCP session, by skill; ended with it.
#[derive(Debug)]
struct Conversation {
    host: Arc<Host>,
    sessions: Mutex<HashMap<String, (String, Option<String>)>>,
}

impl Conversation {
    /// The open session of `skill` for `owner`, opened now if there is none, or in place
    /// of `ended` when that is the one recorded (a concurrent call may have replaced it
    /// already); a tool error the model can read when it cannot be opened.
    async fn session(
        &self,
        skill: &str,
        owner: &Option<String>,
        ended: Option<&str>,
    ) -> Result<String, rmcp::model::CallToolResult> {
        let mut sessions = self.sessions.lock().await;
        if let Some((id, _)) = sessions.get(skill) {
            if ended != Some(id.as_str()) {
                return Ok(id.clone());
            }
        }
        match self
            .host
            .open_session_as(owner.as_deref(), SessionRequest::new(skill))
            .await
        {
            Ok(info) => {
                sessions.insert(skill.to_string(), (info.id.clone(), owner.clone()));
                Ok(info.id)
            }
            Err(refusal) => Err(results::refused(
                refusal.status.as_str(),
                refusal.code,
                &refusal.message,
            )),
        }
    }
}

impl Drop for Conversation {
    fn drop(&mut self) {
        let sessions = std::mem::take(self.sessions.get_mut());
        if sessions.is_empty() {
            return;
        }
        let host = self.host.clone();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            for (_, (id, owner)) in sessions {
                if let Ok(session) = host.session_as(owner.as_deref(), &id) {
                    if let Err(refusal) = session.close().await {
                        tracing::warn!(
                            "the MCP session's skillhost session {id} did not end: {}",
                            refusal.message
                        );
                    }
                }
            }
        });
    }
}
