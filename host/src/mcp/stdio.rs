//! `skillhost mcp`: MCP on stdin and stdout, for as long as the client keeps them open,
//! served by a host of this process's own. Every call is the library caller's, and the
//! process's lifetime is the conversation: a skill that takes sessions keeps one session
//! from call to call until the client goes.

use std::sync::Arc;

use rmcp::model::Extensions;
use rmcp::{ErrorData, ServiceExt};
use skillhost_api::InvocationResult;

use super::server::{self, Front, McpServer, ToolCall};
use crate::host::Host;

/// Why MCP on stdio stopped short of the client closing it.
#[derive(Debug, thiserror::Error)]
#[error("MCP on stdio: {message}")]
pub struct StdioError {
    message: String,
}

/// Serve MCP on stdin and stdout with `host` until the client closes stdin (or, as an MCP
/// client that ends a stdio server does, the process is signalled). The caller shuts the
/// host down after, which ends the sessions the conversation opened.
pub async fn serve_stdio(host: Arc<Host>) -> Result<(), StdioError> {
    let tools = server::tools(&host).into();
    let handler = McpServer::new(Arc::new(OwnHost(host)), tools, true);
    let running = handler
        .serve(rmcp::transport::io::stdio())
        .await
        .map_err(|e| StdioError {
            message: format!("the client's initialization failed: {e}"),
        })?;
    running.waiting().await.map_err(|e| StdioError {
        message: e.to_string(),
    })?;
    Ok(())
}

/// A host of this process's own: calls run at once, as the library's caller's.
#[derive(Debug)]
struct OwnHost(Arc<Host>);

impl Front for OwnHost {
    fn host(&self) -> &Arc<Host> {
        &self.0
    }

    fn owner(&self, _extensions: &Extensions) -> Result<Option<String>, ErrorData> {
        Ok(None)
    }

    async fn run(
        &self,
        _extensions: &Extensions,
        owner: Option<String>,
        call: ToolCall,
    ) -> InvocationResult {
        let host = &self.0;
        match &call.session {
            None => {
                host.invoke_with(&call.skill, &call.action, call.args, call.options)
                    .await
            }
            Some(id) => match host.session_as(owner.as_deref(), id) {
                Ok(session) => {
                    session
                        .invoke_with(&call.action, call.args, call.options)
                        .await
                }
                Err(refusal) => {
                    let id = call.options.id.clone().unwrap_or_default();
                    let mut result = InvocationResult::new(id, &call.skill, &call.action);
                    refusal.apply_to(&mut result);
                    result
                }
            },
        }
    }
}
