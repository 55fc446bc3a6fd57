//! Free text attached to a reservation.

use std::fmt;

use crate::error::InvalidValue;

/// The most bytes a note may have.
pub const MAX_NOTE_BYTES: usize = 4096;

/// A note: at most 4096 bytes of UTF-8 with no NUL character.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Note(String);

impl Note {
    /// Parses a note.
    ///
    /// # Errors
    /// When it is longer than 4096 bytes or holds a NUL character (which
    /// PostgreSQL cannot store in text).
    pub fn parse(value: impl Into<String>) -> Result<Self, InvalidValue> {
        let value = value.into();
        if value.len() > MAX_NOTE_BYTES {
            return Err(InvalidValue::new(format!(
                "must be at most {MAX_NOTE_BYTES} bytes, got {}",
                value.len()
            )));
        }
        if value.contains('\0') {
            return Err(InvalidValue::new("must not contain NUL characters"));
        }
        Ok(Note(value))
    }

    /// The note's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The note as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }

    /// Whether the note is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl AsRef<str> for Note {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Note> for String {
    fn from(note: Note) -> String {
        note.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn note_is_bounded_in_bytes() {
        assert!(Note::parse("a".repeat(MAX_NOTE_BYTES)).is_ok());
        assert!(Note::parse("a".repeat(MAX_NOTE_BYTES + 1)).is_err());
        // 2 bytes per character: 2049 characters are 4098 bytes.
        assert!(Note::parse("é".repeat(2049)).is_err());
        assert!(Note::parse("line one\nline two\t").is_ok());
        assert!(Note::parse("nul\0").is_err());
    }
}
