//! UTF-8-safe streaming of token bytes.

/// Turns a stream of token byte pieces into text without ever printing half
/// a character: bytes of a multi-byte character split across tokens wait
/// until the character is complete. Bytes that can never become valid UTF-8
/// come out as U+FFFD.
#[derive(Debug, Default, Clone)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the bytes of one token; returns the text that is now complete.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // SAFETY-free: from_utf8 vouched for the first `valid` bytes.
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // An incomplete character at the end: wait for more bytes.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        // Bytes that can never be valid: replace and go on.
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Ends the stream: an incomplete trailing character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_multibyte_characters_wait_for_completion() {
        let text = "héllo 世界 🦀";
        let bytes = text.as_bytes();
        // Every way of cutting the text into two pieces gives back the text,
        // and no piece ever holds a replacement character.
        for cut in 0..=bytes.len() {
            let mut s = Utf8Stream::new();
            let a = s.push(&bytes[..cut]);
            let b = s.push(&bytes[cut..]);
            assert!(!a.contains('\u{FFFD}') && !b.contains('\u{FFFD}'));
            assert_eq!(a + &b + &s.finish(), text);
        }
        // One byte at a time.
        let mut s = Utf8Stream::new();
        let joined: String = bytes.iter().map(|b| s.push(&[*b])).collect();
        assert_eq!(joined, text);
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut s = Utf8Stream::new();
        assert_eq!(s.push(b"a\xffb"), "a\u{FFFD}b");
        assert_eq!(s.push(b"\xe4\xb8"), "");
        assert_eq!(s.finish(), "\u{FFFD}");
    }
}
