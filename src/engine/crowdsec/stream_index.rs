//! Where each entry of a decisions stream answer lies in its text, found a
//! slice of the text at a time: a startup answer of 100,000 decisions is
//! some 14 MB, and reading all of it in one go held worker 0 for tens of
//! milliseconds. serde_json reads each value (so its checks are the
//! checks); this file only walks the answer's outer object and its two
//! lists between values, and can stop after any of them.
//!
//! It reads what serde_json reads into `{new: Option<Vec<_>>, deleted:
//! Option<Vec<_>>}`, a little more strictly: the answer must be an object
//! (serde also takes a struct as a list), and members it does not know
//! must be valid UTF-8 too (serde skips them unread). LAPI writes neither.

use core::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;

/// Where each entry lies: deleted ones first, then new ones (`true`).
pub type Entries = Vec<(bool, Range<usize>)>;

/// What the answer is not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotAStream(pub String);

impl core::fmt::Display for NotAStream {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum At {
    /// Before the outer `{`.
    Start,
    /// After `{` or a member: a name, `,` or `}` (`first`: no member yet).
    Member {
        first: bool,
    },
    /// In `new` (true) or `deleted`: an entry, `,` or `]`.
    List {
        new: bool,
        first: bool,
    },
    /// After the outer `}`: whitespace only.
    End,
    Done,
}

/// An answer being indexed: [`StreamIndex::step`] until done, then
/// [`StreamIndex::entries`].
#[derive(Debug)]
pub struct StreamIndex {
    at: At,
    pos: usize,
    deleted: Vec<Range<usize>>,
    new: Vec<Range<usize>>,
    seen_new: bool,
    seen_deleted: bool,
}

impl Default for StreamIndex {
    fn default() -> Self {
        StreamIndex::new()
    }
}

impl StreamIndex {
    pub fn new() -> StreamIndex {
        StreamIndex {
            at: At::Start,
            pos: 0,
            deleted: Vec::new(),
            new: Vec::new(),
            seen_new: false,
            seen_deleted: false,
        }
    }

    /// Reads on through `body` (the same text every call) until done or
    /// `budget` bytes further; true when the whole answer is indexed.
    /// A value is never cut: one longer than `budget` is read whole.
    pub fn step(&mut self, body: &[u8], budget: usize) -> Result<bool, NotAStream> {
        let stop = self.pos.saturating_add(budget.max(1));
        while self.at != At::Done {
            if self.pos >= stop {
                return Ok(false);
            }
            self.next(body)?;
        }
        Ok(true)
    }

    /// The entries found, deleted ones first, then new ones (`true`), as
    /// they are applied.
    pub fn entries(self) -> Entries {
        let deleted = self.deleted.into_iter().map(|r| (false, r));
        let new = self.new.into_iter().map(|r| (true, r));
        deleted.chain(new).collect()
    }

    /// One move: a punctuation mark, a member's name and value, or an
    /// entry.
    fn next(&mut self, body: &[u8]) -> Result<(), NotAStream> {
        self.skip_whitespace(body);
        let byte = body.get(self.pos).copied();
        match self.at {
            At::Start => {
                self.expect(byte, b'{', "`{`")?;
                self.at = At::Member { first: true };
            }
            At::Member { first } => {
                if byte == Some(b'}') {
                    self.pos += 1;
                    self.at = At::End;
                    return Ok(());
                }
                if !first {
                    self.expect(byte, b',', "`,` or `}`")?;
                    self.skip_whitespace(body);
                }
                self.member(body)?;
            }
            At::List { new, first } => {
                if byte == Some(b']') {
                    self.pos += 1;
                    self.at = At::Member { first: false };
                    return Ok(());
                }
                if !first {
                    self.expect(byte, b',', "`,` or `]`")?;
                    self.skip_whitespace(body);
                }
                let range = self.value(body)?;
                match new {
                    true => self.new.push(range),
                    false => self.deleted.push(range),
                }
                self.at = At::List { new, first: false };
            }
            At::End => {
                if byte.is_some() {
                    return Err(self.error("trailing characters"));
                }
                self.at = At::Done;
            }
            At::Done => {}
        }
        Ok(())
    }

    /// A member: `new` and `deleted` open their list (or are `null`), any
    /// other is read whole and left.
    fn member(&mut self, body: &[u8]) -> Result<(), NotAStream> {
        let name_at = self.pos;
        let name = self.value(body)?;
        let name: String = serde_json::from_slice(&body[name])
            .map_err(|_| error_at(name_at, "a member's name is not a string"))?;
        self.skip_whitespace(body);
        self.expect(body.get(self.pos).copied(), b':', "`:`")?;
        let list = match name.as_str() {
            "new" => Some((true, core::mem::replace(&mut self.seen_new, true))),
            "deleted" => Some((false, core::mem::replace(&mut self.seen_deleted, true))),
            _ => None,
        };
        let Some((new, seen)) = list else {
            self.value(body)?;
            self.at = At::Member { first: false };
            return Ok(());
        };
        if seen {
            return Err(error_at(name_at, &format!("duplicate field `{name}`")));
        }
        self.skip_whitespace(body);
        let value_at = self.pos;
        match body.get(self.pos) {
            Some(b'[') => {
                self.pos += 1;
                self.at = At::List { new, first: true };
            }
            _ => {
                let value = self.value(body)?;
                if &body[value] != b"null" {
                    return Err(error_at(value_at, &format!("`{name}` is not a list")));
                }
                self.at = At::Member { first: false };
            }
        }
        Ok(())
    }

    /// One JSON value from here, read by serde_json: where it lies.
    fn value(&mut self, body: &[u8]) -> Result<Range<usize>, NotAStream> {
        let rest = &body[self.pos..];
        let mut reader = serde_json::Deserializer::from_slice(rest);
        let raw = <&RawValue>::deserialize(&mut reader).map_err(|e| {
            // serde_json's line and column count from this value on.
            let text = e.to_string();
            let what = text.split(" at line ").next().unwrap_or_default();
            self.error(what)
        })?;
        let start = self.pos + (raw.get().as_ptr() as usize - rest.as_ptr() as usize);
        let end = start + raw.get().len();
        self.pos = end;
        Ok(start..end)
    }

    fn expect(&mut self, byte: Option<u8>, want: u8, what: &str) -> Result<(), NotAStream> {
        if byte != Some(want) {
            return Err(self.error(&format!("expected {what}")));
        }
        self.pos += 1;
        Ok(())
    }

    fn skip_whitespace(&mut self, body: &[u8]) {
        while matches!(body.get(self.pos), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn error(&self, what: &str) -> NotAStream {
        error_at(self.pos, what)
    }
}

fn error_at(pos: usize, what: &str) -> NotAStream {
    NotAStream(format!("{what} at byte {pos}"))
}

/// The whole answer indexed in one go (tests, fuzzing).
pub fn index_stream(body: &[u8]) -> Result<Entries, NotAStream> {
    let mut index = StreamIndex::new();
    index.step(body, usize::MAX)?;
    Ok(index.entries())
}

/// serde_json's reading of the whole answer at once, which the index must
/// agree with (tests, fuzzing).
pub fn serde_reading(body: &[u8]) -> Option<Entries> {
    #[derive(Deserialize)]
    struct Raw<'a> {
        #[serde(borrow, default)]
        new: Option<Vec<&'a RawValue>>,
        #[serde(borrow, default)]
        deleted: Option<Vec<&'a RawValue>>,
    }
    let raw: Raw<'_> = serde_json::from_slice(body).ok()?;
    let base = body.as_ptr() as usize;
    let range = |v: &RawValue| {
        let start = v.get().as_ptr() as usize - base;
        start..start + v.get().len()
    };
    let deleted = raw.deleted.iter().flatten().map(|v| (false, range(v)));
    let new = raw.new.iter().flatten().map(|v| (true, range(v)));
    Some(deleted.chain(new).collect())
}

#[cfg(test)]
mod tests;
