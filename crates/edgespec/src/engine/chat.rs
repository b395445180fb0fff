//! Chat prompts through the model's own template.

use std::ffi::CString;

use llama_cpp_sys_2 as sys;

use super::{EngineError, Model};

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message of `role`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.into(),
            content: content.into(),
        }
    }

    /// A user message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }
}

impl Model {
    /// Formats `messages` with the model's chat template, ending with the
    /// opening of an assistant turn. Uses llama.cpp's built-in template
    /// engine, which recognises the common template families (ChatML,
    /// Llama 3, Gemma, ...).
    pub fn apply_chat_template(&self, messages: &[ChatMessage]) -> Result<String, EngineError> {
        let template = self.chat_template().ok_or(EngineError::NoChatTemplate)?;
        let template = CString::new(template).map_err(|_| EngineError::NulInText)?;
        let owned: Vec<(CString, CString)> = messages
            .iter()
            .map(|m| {
                Ok((
                    CString::new(m.role.as_str())?,
                    CString::new(m.content.as_str())?,
                ))
            })
            .collect::<Result<_, std::ffi::NulError>>()
            .map_err(|_| EngineError::NulInText)?;
        let raw: Vec<sys::llama_chat_message> = owned
            .iter()
            .map(|(role, content)| sys::llama_chat_message {
                role: role.as_ptr(),
                content: content.as_ptr(),
            })
            .collect();
        let mut buf = vec![
            0u8;
            2 * messages
                .iter()
                .map(|m| m.content.len() + m.role.len())
                .sum::<usize>()
                + 256
        ];
        for _ in 0..2 {
            let cap = i32::try_from(buf.len()).unwrap_or(i32::MAX);
            // SAFETY: template and every message string are NUL-terminated and
            // outlive the call; buf has room for cap bytes.
            let n = unsafe {
                sys::llama_chat_apply_template(
                    template.as_ptr(),
                    raw.as_ptr(),
                    raw.len(),
                    true,
                    buf.as_mut_ptr().cast(),
                    cap,
                )
            };
            if n < 0 {
                return Err(EngineError::UnsupportedChatTemplate);
            }
            let n = n as usize;
            if n <= buf.len() {
                buf.truncate(n);
                return String::from_utf8(buf).map_err(|_| EngineError::UnsupportedChatTemplate);
            }
            buf.resize(n, 0);
        }
        Err(EngineError::UnsupportedChatTemplate)
    }
}
