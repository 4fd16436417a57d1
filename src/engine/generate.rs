//! The [`Generate`] trait: how the rest of the service asks the engine for text. A request
//! (chat messages + sampling settings) goes in; a stream of [`GenEvent`]s comes out as tokens
//! decode. Dropping the [`GenStream`] cancels the request: the scheduler stops spending compute
//! on it at its next step. Implementations queue requests with admission control and answer
//! [`EngineError::Overloaded`] when the queue is full.

use std::time::Duration;

use super::EngineError;
use super::generator::{FinishReason, GenParams};

/// One chat message (`system`, `user` or `assistant`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    pub role: String,
    pub content: String,
}

impl ChatMessage {
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
        }
    }
}

/// A generation request.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub messages: Vec<ChatMessage>,
    pub params: GenParams,
}

/// How a finished request went.
#[derive(Debug, Clone)]
pub struct GenSummary {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub finish: FinishReason,
    /// Submission → first token.
    pub time_to_first_token: Duration,
    /// Submission → end.
    pub total: Duration,
}

/// What a stream yields, in order: `Delta`s (complete UTF-8 only), then exactly one `Done`
/// or `Error`.
#[derive(Debug, Clone)]
pub enum GenEvent {
    Delta(String),
    Done(GenSummary),
    Error(String),
}

/// The receiving end of one request. Dropping it cancels the request.
pub struct GenStream {
    pub events: tokio::sync::mpsc::Receiver<GenEvent>,
}

impl GenStream {
    /// Wait for the whole text (non-streaming callers).
    pub async fn collect(mut self) -> Result<(String, GenSummary), EngineError> {
        let mut text = String::new();
        while let Some(event) = self.events.recv().await {
            match event {
                GenEvent::Delta(d) => text.push_str(&d),
                GenEvent::Done(summary) => return Ok((text, summary)),
                GenEvent::Error(e) => return Err(EngineError::InvalidInput(e)),
            }
        }
        Err(EngineError::InvalidInput(
            "the generator stopped without finishing".into(),
        ))
    }
}

/// A loaded text generator.
pub trait Generate: Send + Sync {
    /// The model's name (as `/v1/models` lists it).
    fn model(&self) -> &str;
    /// sha256 of the model file (part of the response-cache key).
    fn file_hash(&self) -> &str;
    /// Languages the model writes well enough for `generate` mode (from the manifest, e.g.
    /// `["en"]`); readings use `compose` for any other language in `auto` mode.
    fn languages(&self) -> &[String];
    /// Queue a request; tokens arrive on the returned stream as they decode.
    fn submit(&self, request: GenRequest) -> Result<GenStream, EngineError>;
}
