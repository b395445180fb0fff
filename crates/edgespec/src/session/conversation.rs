//! A conversation on a session: system, user and assistant messages
//! rendered with the target's chat template, each turn reading only what
//! the caches do not hold yet (the target's, every drafter's, EAD's small
//! model's), and editing or regenerating the last turn rolling back to the
//! common prefix instead of starting over.

use super::{Outcome, Session};
use crate::engine::{ChatMessage, EngineError, Token};
use crate::error::GenerateError;
use crate::generate::Piece;

/// What a turn does when the history no longer fits in the context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhenFull {
    /// Fail the turn with the context-overflow error; the history stays.
    #[default]
    Error,
    /// Drop the oldest user/assistant exchanges (the system message stays)
    /// until the history and room for the answer fit, then read the
    /// history again from the first dropped position.
    DropOldest,
}

/// A conversation: the messages so far and the session that holds their
/// caches.
pub struct Conversation {
    session: Session,
    messages: Vec<ChatMessage>,
    when_full: WhenFull,
    reuse: bool,
}

impl Conversation {
    /// An empty conversation on `session` (its caches are emptied).
    pub fn new(mut session: Session, when_full: WhenFull) -> Self {
        session.clear();
        Self {
            session,
            messages: Vec::new(),
            when_full,
            reuse: true,
        }
    }

    /// The messages so far, oldest first.
    pub fn messages(&self) -> &[ChatMessage] {
        &self.messages
    }

    /// The session (its model, its counters).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// The session, mutably: a one-shot [`Session::generate`] on it
    /// empties the caches, which the next turn then reads again.
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// Whether turns read only what the caches lack (the default) or the
    /// whole history from empty caches (for comparison).
    pub fn set_reuse(&mut self, reuse: bool) {
        self.reuse = reuse;
    }

    /// Chooses what a turn does when the history no longer fits.
    pub fn set_when_full(&mut self, when_full: WhenFull) {
        self.when_full = when_full;
    }

    /// Adds a message of `role` (`system`, `user` or `assistant`) without
    /// generating: a system prompt, or a history to continue.
    pub fn add(&mut self, role: &str, content: &str) {
        self.messages.push(ChatMessage::new(role, content));
    }

    /// Adds the user's `text` and generates the assistant's answer (up to
    /// `max_tokens`, streamed to `on_token`), which joins the history. On
    /// an error the user's message is taken back out.
    pub fn respond(
        &mut self,
        text: &str,
        max_tokens: usize,
        on_token: impl FnMut(Piece, &str) -> bool,
    ) -> Result<Outcome, GenerateError> {
        self.add("user", text);
        let outcome = self.answer(max_tokens, on_token);
        if outcome.is_err() {
            self.messages.pop();
        }
        outcome
    }

    /// Generates the answer to the history as it stands (normally ending
    /// with a user message); the answer joins the history.
    pub fn answer(
        &mut self,
        max_tokens: usize,
        on_token: impl FnMut(Piece, &str) -> bool,
    ) -> Result<Outcome, GenerateError> {
        let prompt = self.fitted_prompt(max_tokens)?;
        let outcome = self
            .session
            .run(&prompt, max_tokens, self.reuse, on_token)?;
        // A model may produce a NUL byte, which no chat template call
        // takes: the history keeps U+FFFD in its place (the caches roll
        // back to there next turn), so one odd token does not end the
        // conversation.
        self.add(
            "assistant",
            &outcome.generation.text.replace('\0', "\u{FFFD}"),
        );
        Ok(outcome)
    }

    /// Drops the last answer and generates it again (the caches roll back
    /// to the end of the last user message).
    pub fn regenerate(
        &mut self,
        max_tokens: usize,
        on_token: impl FnMut(Piece, &str) -> bool,
    ) -> Result<Outcome, GenerateError> {
        if self.messages.last().is_some_and(|m| m.role == "assistant") {
            self.messages.pop();
        }
        self.answer(max_tokens, on_token)
    }

    /// Replaces the last user message (and drops its answer), then answers
    /// it: the caches roll back to where the two versions part.
    pub fn edit_last(
        &mut self,
        text: &str,
        max_tokens: usize,
        on_token: impl FnMut(Piece, &str) -> bool,
    ) -> Result<Outcome, GenerateError> {
        if let Some(last_user) = self.messages.iter().rposition(|m| m.role == "user") {
            self.messages.truncate(last_user);
        }
        self.respond(text, max_tokens, on_token)
    }

    /// Forgets every message but the system prompt, and the caches.
    pub fn reset(&mut self) {
        self.messages.retain(|m| m.role == "system");
        self.session.clear();
    }

    /// The history's prompt tokens, after dropping the oldest exchanges if
    /// the caller chose [`WhenFull::DropOldest`] and it does not fit with
    /// room for an answer (`max_tokens`, at most a quarter of the context).
    fn fitted_prompt(&mut self, max_tokens: usize) -> Result<Vec<Token>, GenerateError> {
        let n_ctx = self.session.target().n_ctx() as usize;
        let room = max_tokens.clamp(1, (n_ctx / 4).max(1));
        loop {
            let prompt = self.render()?;
            if prompt.len() + room <= n_ctx || self.when_full == WhenFull::Error {
                return Ok(prompt);
            }
            // The oldest exchange after the system prompt, if any is left
            // besides the message being answered.
            let first = self.messages.iter().position(|m| m.role != "system");
            let last_user = self.messages.iter().rposition(|m| m.role == "user");
            match (first, last_user) {
                (Some(first), Some(last)) if first < last => {
                    let end = self.messages[first + 1..last]
                        .iter()
                        .position(|m| m.role == "user")
                        .map_or(last, |i| first + 1 + i);
                    self.messages.drain(first..end);
                }
                _ => return Ok(prompt),
            }
        }
    }

    /// The history's prompt tokens: every message through the target's
    /// chat template, ending with the assistant's turn opening.
    pub fn render(&self) -> Result<Vec<Token>, EngineError> {
        let model = self.session.model();
        let text = model.apply_chat_template(&self.messages)?;
        model.tokenize(&text, true, true)
    }
}
