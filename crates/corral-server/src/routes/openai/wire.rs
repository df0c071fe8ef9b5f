//! OpenAI's response objects, as typed structs. Field order is the order OpenAI (and Ollama's
//! translation layer) writes them in; clients do not care, but the snapshots and people reading
//! a stream do.

use corral_types::api::Logprob;
use corral_types::runner::DoneReason;
use serde::Serialize;

use crate::infer::answer::Finish;
use corral_types::api::ToolCall;

/// Why a choice ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
}

impl FinishReason {
    /// The reason an answer ended with, `calls` whether it made tool calls.
    pub fn of(finish: &Finish, calls: bool) -> Self {
        match finish.reason {
            _ if calls => FinishReason::ToolCalls,
            DoneReason::Length => FinishReason::Length,
            DoneReason::Stop => FinishReason::Stop,
        }
    }
}

/// A chat completion, a chunk of one, or a text completion: the envelope around the choices.
#[derive(Debug, Serialize)]
pub struct Envelope<C> {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub system_fingerprint: &'static str,
    pub choices: Vec<C>,
    /// Absent on stream chunks; `null` on an answer without counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// Token counts. OpenAI counts the whole prompt, with the part served from the prompt cache in
/// the details.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub total_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PromptDetails {
    pub cached_tokens: u32,
}

impl Usage {
    pub fn of(f: &Finish) -> Self {
        let cached = f.usage.cached_tokens;
        let (p, c) = (f.whole_prompt_tokens(), f.usage.generated_tokens);
        Usage {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p + c,
            prompt_tokens_details: Some(PromptDetails { cached_tokens: cached }),
        }
    }
}

/// One choice of a whole chat completion.
#[derive(Debug, Serialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: ChatMessage,
    pub finish_reason: Option<FinishReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Logprobs>,
}

#[derive(Debug, Serialize)]
pub struct ChatMessage {
    pub role: &'static str,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<MessageToolCall>>,
}

/// One choice of a chat completion chunk.
#[derive(Debug, Serialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: ChunkDelta,
    pub finish_reason: Option<FinishReason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprobs: Option<Logprobs>,
}

/// What a chunk adds to the message.
#[derive(Debug, Default, Serialize)]
pub struct ChunkDelta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<MessageToolCall>>,
}

/// A tool call in OpenAI's shape (arguments as a JSON string, `type: "function"`).
#[derive(Debug, Serialize)]
pub struct MessageToolCall {
    pub index: usize,
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub function: Function,
}

#[derive(Debug, Serialize)]
pub struct Function {
    pub name: String,
    /// The arguments as a JSON string.
    pub arguments: String,
}

impl MessageToolCall {
    pub fn list(calls: &[ToolCall]) -> Vec<MessageToolCall> {
        calls
            .iter()
            .map(|c| MessageToolCall {
                index: c.index,
                id: c.id.clone().unwrap_or_default(),
                kind: "function",
                function: Function { name: c.function.name.clone(), arguments: c.arguments_json() },
            })
            .collect()
    }
}

#[derive(Debug, Serialize)]
pub struct Logprobs {
    pub content: Vec<TokenLogprob>,
}

#[derive(Debug, Serialize)]
pub struct TokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Option<Vec<u8>>,
    pub top_logprobs: Vec<TopLogprob>,
}

#[derive(Debug, Serialize)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Option<Vec<u8>>,
}

impl Logprobs {
    pub fn of(lps: &[Logprob]) -> Self {
        let top = |l: &Logprob| {
            l.top_logprobs
                .iter()
                .flatten()
                .map(|t| TopLogprob { token: t.token.clone(), logprob: t.logprob, bytes: t.bytes.clone() })
                .collect()
        };
        Logprobs {
            content: lps
                .iter()
                .map(|l| TokenLogprob {
                    token: l.token.clone(),
                    logprob: l.logprob,
                    bytes: l.bytes.clone(),
                    top_logprobs: top(l),
                })
                .collect(),
        }
    }
}

/// One choice of a text completion (or a chunk of one).
#[derive(Debug, Serialize)]
pub struct TextChoice {
    pub text: String,
    pub index: u32,
    pub finish_reason: Option<FinishReason>,
}

/// A model in `/v1/models`.
#[derive(Debug, Serialize)]
pub struct Model {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: String,
}

/// `/v1/models`: `data` is `null` when there are none, as Ollama writes it.
#[derive(Debug, Serialize)]
pub struct ModelList {
    pub object: &'static str,
    pub data: Option<Vec<Model>>,
}
