//! Which markers a model writes. A family is recognised by the markers its chat template
//! contains, and brings the tags that open (and maybe close) its tool calls, the tags around its
//! thinking, and markers that wrap content without being part of it. What the text between a
//! call's tags means is read in `calls.rs`; when each tag counts is the parser's business.

/// Tags around thinking.
pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";
/// A tag that starts a tool call, and how the call ends (`None`: the call expression that
/// follows ends it: JSON, or `name[ARGS]{…}`).
pub(crate) type CallTag = (&'static str, Option<&'static str>);
/// Tags every parser knows: Qwen 2.5 / Hermes, and Mistral.
pub(crate) const CALL_TAGS: [CallTag; 2] = [("<tool_call>", Some("</tool_call>")), ("[TOOL_CALLS]", None)];

/// DeepSeek's markers (fullwidth bars, and `▁` for spaces).
pub(crate) const DEEPSEEK_CALLS_BEGIN: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}begin\u{ff5c}>";
pub(crate) const DEEPSEEK_CALLS_END: &str = "<\u{ff5c}tool\u{2581}calls\u{2581}end\u{ff5c}>";
pub(crate) const DEEPSEEK_CALL_BEGIN: &str = "<\u{ff5c}tool\u{2581}call\u{2581}begin\u{ff5c}>";
pub(crate) const DEEPSEEK_CALL_END: &str = "<\u{ff5c}tool\u{2581}call\u{2581}end\u{ff5c}>";
pub(crate) const DEEPSEEK_SEP: &str = "<\u{ff5c}tool\u{2581}sep\u{ff5c}>";

/// How a model family writes tool calls and thinking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// `<tool_call>{…}</tool_call>`, `[TOOL_CALLS]{…}`, bare JSON; `<think>`.
    Generic,
    Llama3,
    Mistral,
    Qwen3Coder,
    DeepSeek,
    CommandR,
    Granite,
    /// gpt-oss: harmony channels.
    Harmony,
}

impl Family {
    /// The family whose markers the chat template writes (Generic when none).
    pub fn of_template(template: &str) -> Family {
        match () {
            _ if template.contains("<|channel|>") && template.contains("<|message|>") => Family::Harmony,
            _ if template.contains("<|START_ACTION|>") => Family::CommandR,
            _ if template.contains(DEEPSEEK_CALLS_BEGIN) => Family::DeepSeek,
            _ if template.contains("<function=") && template.contains("<parameter=") => Family::Qwen3Coder,
            _ if template.contains("[TOOL_CALLS]") && template.contains("[ARGS]") => Family::Mistral,
            _ if template.contains("<|tool_call|>") => Family::Granite,
            _ if template.contains("<|python_tag|>") => Family::Llama3,
            _ => Family::Generic,
        }
    }

    /// Call tags beyond [`CALL_TAGS`].
    pub(crate) fn call_tags(self) -> &'static [CallTag] {
        match self {
            Family::Llama3 => &[("<|python_tag|>", None)],
            Family::DeepSeek => &[(DEEPSEEK_CALLS_BEGIN, Some(DEEPSEEK_CALLS_END))],
            Family::CommandR => &[("<|START_ACTION|>", Some("<|END_ACTION|>"))],
            Family::Granite => &[("<|tool_call|>", None)],
            Family::Generic | Family::Mistral | Family::Qwen3Coder | Family::Harmony => &[],
        }
    }

    /// The tags around its thinking.
    pub fn think_tags(self) -> (&'static str, &'static str) {
        match self {
            Family::CommandR => ("<|START_THINKING|>", "<|END_THINKING|>"),
            _ => (THINK_OPEN, THINK_CLOSE),
        }
    }

    /// What opens thinking in the output, and what ends it when a budget cuts it short: the
    /// thinking tags, or for gpt-oss the end of its analysis message and the start of its answer.
    pub fn budget_tags(self) -> (&'static str, &'static str) {
        match self {
            Family::Harmony => {
                ("<|channel|>analysis<|message|>", "<|end|><|start|>assistant<|channel|>final<|message|>")
            }
            other => other.think_tags(),
        }
    }

    /// Markers around content that are not part of it.
    pub(crate) fn dropped(self) -> &'static [&'static str] {
        match self {
            Family::CommandR => &["<|START_RESPONSE|>", "<|END_RESPONSE|>"],
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Issue 14: each family's own call format, from the markers its template writes.
    #[test]
    fn issue_14_families_are_chosen_from_their_templates() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../corral-template/tests/chat-templates/");
        for (file, family) in [
            ("meta-llama-Llama-3.1-8B-Instruct.jinja", Family::Llama3),
            ("Mistral-Small-3.2-24B-Instruct-2506.jinja", Family::Mistral),
            ("Qwen3-Coder.jinja", Family::Qwen3Coder),
            ("deepseek-ai-DeepSeek-V3.1.jinja", Family::DeepSeek),
            ("llama-cpp-deepseek-r1.jinja", Family::DeepSeek),
            ("CohereForAI-c4ai-command-r7b-12-2024-tool_use.jinja", Family::CommandR),
            ("ibm-granite-granite-3.3-2B-Instruct.jinja", Family::Granite),
            ("Qwen-Qwen3-0.6B.jinja", Family::Generic),
        ] {
            let template = std::fs::read_to_string(format!("{dir}{file}")).unwrap();
            assert_eq!(Family::of_template(&template), family, "{file}");
        }
    }

    #[test]
    fn markers_are_checked_in_order_so_the_most_specific_family_wins() {
        // `[TOOL_CALLS]` alone is followed by JSON, which every family reads.
        assert_eq!(Family::of_template("[TOOL_CALLS] {{ tools }}"), Family::Generic);
        assert_eq!(Family::of_template("[TOOL_CALLS]{{ name }}[ARGS]"), Family::Mistral);
        // Harmony needs both of its markers.
        assert_eq!(Family::of_template("<|channel|>"), Family::Generic);
        // A template with Command R's action tag and Llama's python tag is Command R's.
        assert_eq!(Family::of_template("<|python_tag|><|START_ACTION|>"), Family::CommandR);
    }

    #[test]
    fn thinking_and_budget_tags() {
        assert_eq!(Family::Generic.think_tags(), (THINK_OPEN, THINK_CLOSE));
        assert_eq!(Family::CommandR.think_tags(), ("<|START_THINKING|>", "<|END_THINKING|>"));
        assert_eq!(Family::CommandR.budget_tags(), Family::CommandR.think_tags());
        let (open, close) = Family::Harmony.budget_tags();
        assert_eq!(open, "<|channel|>analysis<|message|>");
        assert!(close.starts_with("<|end|>") && close.ends_with("final<|message|>"), "{close}");
    }
}
