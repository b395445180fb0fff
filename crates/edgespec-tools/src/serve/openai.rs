//! The OpenAI wire format `edgespec serve` speaks: the requests it accepts
//! and the JSON it answers with (chat completions, text completions, their
//! streamed chunks, the model list, errors).

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::json_schema::json_schema_to_gbnf;

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The stop strings.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// One chat message of a request.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
    /// A participant name (accepted, not used).
    #[serde(default)]
    pub name: Option<String>,
}

/// The sampling and length settings both endpoints take.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Settings {
    /// Most tokens to generate.
    pub max_tokens: Option<u64>,
    /// The newer name of `max_tokens` (chat).
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature (0: greedy).
    pub temperature: Option<f32>,
    /// Top-p.
    pub top_p: Option<f32>,
    /// Top-k (a llama.cpp server extension).
    pub top_k: Option<u64>,
    /// Min-p (a llama.cpp server extension).
    pub min_p: Option<f32>,
    /// Subtracted once from a repeated token's logit.
    pub presence_penalty: Option<f32>,
    /// Subtracted per occurrence from a repeated token's logit.
    pub frequency_penalty: Option<f32>,
    /// Divides a repeated token's logit (a llama.cpp server extension).
    pub repeat_penalty: Option<f32>,
    /// Mirostat version: 0 off, 2 on (a llama.cpp server extension).
    pub mirostat: Option<u8>,
    /// Mirostat's target surprise τ.
    pub mirostat_tau: Option<f32>,
    /// Mirostat's learning rate η.
    pub mirostat_eta: Option<f32>,
    /// Seed of a sampled answer.
    pub seed: Option<u64>,
    /// Stop strings.
    pub stop: Option<Stop>,
    /// Constrain the answer to this GBNF grammar (a llama.cpp server extension).
    pub grammar: Option<String>,
    /// `{"type": "json_object"}` or `{"type": "json_schema", "json_schema":
    /// {"schema": …}}`: an answer that is JSON (that the schema accepts).
    pub response_format: Option<ResponseFormat>,
    /// Stream the answer as server-sent events.
    #[serde(default)]
    pub stream: bool,
    /// Answers per request: only 1.
    pub n: Option<u64>,
    /// The model name (any; the server runs one).
    pub model: Option<String>,
}

/// OpenAI's `response_format`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    /// Any text.
    Text,
    /// A JSON object (llama.cpp's server also takes a `schema` here).
    JsonObject {
        /// The schema it must follow.
        schema: Option<Value>,
    },
    /// JSON that a schema accepts.
    JsonSchema {
        /// The schema and its name.
        json_schema: NamedSchema,
    },
}

/// `response_format.json_schema`.
#[derive(Debug, Clone, Deserialize)]
pub struct NamedSchema {
    /// The schema itself.
    pub schema: Value,
}

impl Settings {
    /// The GBNF grammar the request asks for: `grammar`, or the grammar of
    /// its `response_format`; an error for both or a schema beyond the
    /// supported subset.
    pub fn grammar(&self) -> Result<Option<String>, String> {
        let schema = match &self.response_format {
            None | Some(ResponseFormat::Text) => None,
            Some(ResponseFormat::JsonObject { schema }) => {
                Some(schema.clone().unwrap_or_else(|| json!({"type": "object"})))
            }
            Some(ResponseFormat::JsonSchema { json_schema }) => Some(json_schema.schema.clone()),
        };
        match (&self.grammar, schema) {
            (Some(_), Some(_)) => Err("give grammar or a JSON response_format, not both".into()),
            (Some(g), None) => Ok(Some(g.clone())),
            (None, Some(schema)) => json_schema_to_gbnf(&schema.to_string())
                .map(Some)
                .map_err(|e| e.to_string()),
            (None, None) => Ok(None),
        }
    }
}

/// `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The conversation so far.
    pub messages: Vec<Message>,
    /// Everything else.
    #[serde(flatten)]
    pub settings: Settings,
}

/// `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The text to continue.
    pub prompt: String,
    /// Everything else.
    #[serde(flatten)]
    pub settings: Settings,
}

/// Token counts of one answer.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Both.
    pub total_tokens: usize,
}

/// Which endpoint an answer is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
}

impl Endpoint {
    fn object(self, chunk: bool) -> &'static str {
        match (self, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }

    /// A choice carrying `text` (a delta when streaming).
    fn choice(self, text: Option<&str>, finish_reason: Option<&str>, chunk: bool) -> Value {
        match (self, chunk) {
            (Endpoint::Chat, false) => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text.unwrap_or("")},
                "finish_reason": finish_reason,
            }),
            (Endpoint::Chat, true) => json!({
                "index": 0,
                "delta": text.map_or(json!({}), |t| json!({"content": t})),
                "finish_reason": finish_reason,
            }),
            (Endpoint::Completion, _) => json!({
                "index": 0,
                "text": text.unwrap_or(""),
                "finish_reason": finish_reason,
            }),
        }
    }

    /// The whole answer.
    pub fn answer(self, id: &str, model: &str, created: u64, text: &str, end: &End) -> Value {
        json!({
            "id": id,
            "object": self.object(false),
            "created": created,
            "model": model,
            "choices": [self.choice(Some(text), Some(end.finish_reason), false)],
            "usage": end.usage,
            "edgespec": end.stats,
        })
    }

    /// A streamed piece of the answer.
    pub fn chunk(self, id: &str, model: &str, created: u64, text: &str) -> Value {
        json!({
            "id": id,
            "object": self.object(true),
            "created": created,
            "model": model,
            "choices": [self.choice(Some(text), None, true)],
        })
    }

    /// The streamed answer's last chunk: why it ended, usage, edgespec's counters.
    pub fn last_chunk(self, id: &str, model: &str, created: u64, end: &End) -> Value {
        json!({
            "id": id,
            "object": self.object(true),
            "created": created,
            "model": model,
            "choices": [self.choice(None, Some(end.finish_reason), true)],
            "usage": end.usage,
            "edgespec": end.stats,
        })
    }
}

/// How an answer ended.
#[derive(Debug, Clone)]
pub struct End {
    /// `stop` (end of generation or a stop string) or `length`.
    pub finish_reason: &'static str,
    /// Token counts.
    pub usage: Usage,
    /// Timings and speculation counters of the generation.
    pub stats: Value,
}

/// An OpenAI error body.
pub fn error_body(message: &str, kind: &str) -> Value {
    json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
}

/// `GET /v1/models`.
pub fn model_list(model: &str, created: u64) -> Value {
    json!({
        "object": "list",
        "data": [{"id": model, "object": "model", "created": created, "owned_by": "edgespec"}],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_take_openai_and_llama_cpp_fields_and_refuse_strange_messages() {
        let chat: ChatRequest = serde_json::from_str(
            r#"{"model": "m", "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 5, "stop": "x", "stream": true, "top_k": 4, "min_p": 0.1}"#,
        )
        .unwrap();
        assert!(chat.settings.stream);
        assert_eq!(chat.settings.stop.unwrap().into_vec(), vec!["x"]);
        assert_eq!(chat.settings.top_k, Some(4));
        let many: CompletionRequest =
            serde_json::from_str(r#"{"prompt": "a", "stop": ["x", "y"]}"#).unwrap();
        assert_eq!(many.settings.stop.unwrap().into_vec().len(), 2);
        assert!(serde_json::from_str::<ChatRequest>(
            r#"{"messages": [{"role": "user", "content": "hi", "image": 1}]}"#
        )
        .is_err());
        assert!(serde_json::from_str::<ChatRequest>(r#"{"messages": "hi"}"#).is_err());
    }
}
