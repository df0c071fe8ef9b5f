//! Following a thinking budget ([`ThinkBudget`]) through a job's output, token by token.
//!
//! The engine does not know a model's thinking format; the request brings the tags. [`Thinking`]
//! watches the text for the opening tag (unless the prompt already opened it), counts the tokens
//! after it, and says when the model closed its thinking itself or when the budget ran out, at
//! which point the job writes [`Thinking::closing`] for the model. It sees only text, so it is
//! tested here without a model.

use corral_types::runner::ThinkBudget;

/// Where a job is in its thinking, for [`ThinkBudget`].
pub(super) struct Thinking {
    budget: ThinkBudget,
    inside: bool,
    /// Thinking tokens generated so far.
    spent: u32,
    /// The latest output text, to find a tag cut across tokens.
    tail: String,
}

/// What one more token did to the thinking.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum ThinkStep {
    Going,
    /// The model closed its thinking itself.
    Closed,
    /// The budget is spent: the closing tag is to be written.
    Spent,
}

impl Thinking {
    pub(super) fn new(budget: ThinkBudget) -> Self {
        Thinking { inside: budget.inside, budget, spent: 0, tail: String::new() }
    }

    /// Follows one more token of output; true when the budget is spent inside the thinking.
    pub(super) fn after(&mut self, text: &str) -> ThinkStep {
        self.tail.push_str(text);
        let tag = if self.inside { &self.budget.close } else { &self.budget.open };
        if self.tail.contains(tag.as_str()) {
            if self.inside {
                return ThinkStep::Closed;
            }
            self.inside = true;
            self.tail.clear();
            return ThinkStep::Going;
        }
        // Keep only what a tag could still end in.
        let keep = self.budget.open.len().max(self.budget.close.len());
        if self.tail.len() > keep {
            let mut cut = self.tail.len() - keep;
            while !self.tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.tail.drain(..cut);
        }
        if self.inside {
            self.spent += 1;
            if self.spent >= self.budget.tokens {
                return ThinkStep::Spent;
            }
        }
        ThinkStep::Going
    }

    /// The text written for the model when its budget is spent: the closing tag on a line of its
    /// own, and the blank line an answer starts after.
    pub(super) fn closing(&self) -> String {
        format!("\n{}\n\n", self.budget.close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ThinkStep::{Closed, Going, Spent};

    fn thinking(tokens: u32, inside: bool) -> Thinking {
        Thinking::new(ThinkBudget { tokens, open: "<think>".into(), close: "</think>".into(), inside })
    }

    /// Feeds `pieces` and returns what each one did.
    fn feed(t: &mut Thinking, pieces: &[&str]) -> Vec<ThinkStep> {
        pieces.iter().map(|p| t.after(p)).collect()
    }

    /// What each of `pieces` does to a fresh job's thinking.
    fn steps(tokens: u32, inside: bool, pieces: &[&str]) -> Vec<ThinkStep> {
        feed(&mut thinking(tokens, inside), pieces)
    }

    #[test]
    fn tokens_count_only_after_the_opening_tag() {
        // Text before the tag and the tag's own token are free; the third thinking token spends it.
        assert_eq!(
            steps(3, false, &["Sure", ".", "<think>", "a", "b", "c"]),
            [Going, Going, Going, Going, Going, Spent]
        );
    }

    #[test]
    fn a_prompt_that_opened_thinking_counts_from_the_first_token() {
        assert_eq!(steps(2, true, &["a", "b"]), [Going, Spent]);
        // Inside, the opening tag is just text.
        assert_eq!(steps(2, true, &["<think>", "x"]), [Going, Spent]);
    }

    #[test]
    fn the_model_may_close_its_thinking_before_the_budget() {
        assert_eq!(steps(10, true, &["hmm", "</think>"]), [Going, Closed]);
        // Outside, the closing tag is just text.
        assert_eq!(steps(1, false, &["</think>", "x"]), [Going, Going]);
    }

    #[test]
    fn a_zero_budget_is_spent_by_the_first_thinking_token() {
        assert_eq!(steps(0, false, &["<think>", "a"]), [Going, Spent]);
    }

    #[test]
    fn tags_cut_across_tokens_are_found() {
        let mut t = thinking(10, false);
        assert_eq!(feed(&mut t, &["<th", "ink", ">", "idea"]), [Going, Going, Going, Going]);
        assert!(t.inside);
        assert_eq!(t.spent, 1);
        assert_eq!(feed(&mut t, &["</", "thi", "nk>"]), [Going, Going, Closed]);
    }

    #[test]
    fn long_output_keeps_a_short_tail_on_character_boundaries() {
        let mut t = thinking(100, true);
        // Multi-byte characters everywhere: trimming the tail must not cut one in half.
        for _ in 0..20 {
            assert_eq!(t.after("é日本語🙂"), Going);
            assert!(t.tail.len() <= "</think>".len());
        }
        assert_eq!(t.after("…</thi"), Going);
        assert_eq!(t.after("nk>"), Closed);
    }

    #[test]
    fn the_closing_text_puts_the_tag_on_its_own_line() {
        assert_eq!(thinking(1, true).closing(), "\n</think>\n\n");
    }
}
