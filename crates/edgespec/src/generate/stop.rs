//! Stop strings (llama.cpp's `-r`/`--reverse-prompt`, OpenAI's `stop`):
//! generation ends where the output text first contains one of them, the
//! stop string and what follows it left out. Streamed text that could
//! still turn into a stop string is held back until it cannot.

/// Watches streamed text for stop strings.
#[derive(Debug, Clone, Default)]
pub struct StopStrings {
    stops: Vec<String>,
    /// Text received but not yet released: a tail that is the start of some stop string.
    held: String,
    /// Bytes of text released so far.
    released: usize,
}

/// What one piece of text releases.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// Text that is certainly output (no stop string can contain it).
    pub text: String,
    /// A stop string ended the output here.
    pub stopped: bool,
}

impl StopStrings {
    /// A watcher for `stops` (empty strings are ignored: they would stop
    /// before anything).
    pub fn new(stops: impl IntoIterator<Item = String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            ..Self::default()
        }
    }

    /// True when there is nothing to watch for.
    pub fn is_empty(&self) -> bool {
        self.stops.is_empty()
    }

    /// Forgets what a previous generation left.
    pub fn restart(&mut self) {
        self.held.clear();
        self.released = 0;
    }

    /// Bytes of output released so far: where the output ends when a stop string matched.
    pub fn released(&self) -> usize {
        self.released
    }

    /// Takes the next piece of streamed text.
    pub fn push(&mut self, text: &str) -> Release {
        self.held.push_str(text);
        let first_match = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_match {
            let text = self.held[..at].to_string();
            self.held.clear();
            self.released += text.len();
            return Release {
                text,
                stopped: true,
            };
        }
        // Hold back the longest tail that begins some stop string.
        let keep = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held[i..];
                self.stops.iter().any(|s| s.starts_with(tail))
            })
            .map_or(0, |i| self.held.len() - i);
        let text: String = self.held.drain(..self.held.len() - keep).collect();
        self.released += text.len();
        Release {
            text,
            stopped: false,
        }
    }

    /// Releases what is held when the output ended without a stop string.
    pub fn finish(&mut self) -> String {
        self.released += self.held.len();
        std::mem::take(&mut self.held)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn watch(stops: &[&str]) -> StopStrings {
        StopStrings::new(stops.iter().map(|s| s.to_string()))
    }

    #[test]
    fn a_stop_split_across_pieces_is_held_back_then_cut() {
        let mut w = watch(&["</s>", "User:"]);
        assert_eq!(w.push("Hello <").text, "Hello ");
        let r = w.push("/");
        assert_eq!((r.text.as_str(), r.stopped), ("", false));
        let r = w.push("s> more");
        assert_eq!((r.text.as_str(), r.stopped), ("", true));
        assert_eq!(w.released(), "Hello ".len());
    }

    #[test]
    fn a_false_start_is_released_once_it_cannot_match() {
        let mut w = watch(&["User:"]);
        assert_eq!(w.push("Us").text, "");
        let r = w.push("ual stuff");
        assert_eq!((r.text.as_str(), r.stopped), ("Usual stuff", false));
        // A tail that begins a stop string stays held until the end.
        assert_eq!(w.push(" U").text, " ");
        assert_eq!(w.finish(), "U");
        assert_eq!(w.released(), "Usual stuff U".len());
    }

    #[test]
    fn the_earliest_stop_wins_and_text_before_it_is_kept() {
        let mut w = watch(&["cd", "b"]);
        let r = w.push("abcd");
        assert_eq!((r.text.as_str(), r.stopped), ("a", true));
    }

    #[test]
    fn multibyte_text_is_held_on_character_boundaries() {
        let mut w = watch(&["é!"]);
        assert_eq!(w.push("caf").text, "caf");
        assert_eq!(w.push("é").text, "");
        let r = w.push("!");
        assert!(r.stopped);
        assert_eq!(w.released(), 3);
    }

    #[test]
    fn no_stops_release_everything_and_empty_ones_are_ignored() {
        let mut w = watch(&[""]);
        assert!(w.is_empty());
        assert_eq!(w.push("anything").text, "anything");
    }
}
