//! From bytes to lines, and from a reader to the batcher.
//!
//! [`LineSplitter`] cuts a byte stream into lines (`\n`, with a trailing `\r` removed) and never
//! holds more than the longest acceptable line: a longer line is reported as oversize and the
//! rest of it skipped up to its newline, so one runaway line cannot grow the agent's memory.
//! [`LineSender`] hands each line to the batcher through a bounded channel after reserving its
//! size from the [`Budget`]; both wait when the agent is behind (backpressure).

use std::sync::Arc;

use tokio::sync::mpsc;

use super::budget::{Budget, Reservation};
use super::counters::{Counters, add};

/// One line on its way to the batcher.
#[derive(Debug)]
pub struct Line {
    pub data: Vec<u8>,
    pub reservation: Reservation,
}

/// What the splitter found.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    /// A complete line, without its line ending.
    Line(Vec<u8>),
    /// A line longer than the limit, of this many bytes; its content was skipped.
    Oversize(usize),
}

/// Cuts bytes into lines of at most `max_line` bytes.
#[derive(Debug)]
pub struct LineSplitter {
    max_line: usize,
    partial: Vec<u8>,
    /// Bytes of the current line skipped because it is already too long.
    skipping: Option<usize>,
}

impl LineSplitter {
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line,
            partial: Vec::new(),
            skipping: None,
        }
    }

    /// Feeds a chunk, appending what it completes to `out`.
    pub fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<Piece>) {
        while !chunk.is_empty() {
            let newline = memchr(chunk);
            let (part, rest, complete) = match newline {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &[][..], false),
            };
            if let Some(skipped) = &mut self.skipping {
                *skipped += part.len();
            } else if self.partial.len() + part.len() > self.max_line + 1 {
                // +1: a trailing '\r' does not count against the limit.
                self.skipping = Some(self.partial.len() + part.len());
                self.partial = Vec::new();
            } else {
                self.partial.extend_from_slice(part);
            }
            if complete {
                self.complete(out);
            }
            chunk = rest;
        }
    }

    /// Ends the stream: a last line without a newline is still a line.
    pub fn finish(&mut self, out: &mut Vec<Piece>) {
        if !self.partial.is_empty() || self.skipping.is_some() {
            self.complete(out);
        }
    }

    /// Forgets a partial line (the file it came from was truncated).
    pub fn clear(&mut self) {
        self.partial = Vec::new();
        self.skipping = None;
    }

    /// Bytes of the line being assembled.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }

    fn complete(&mut self, out: &mut Vec<Piece>) {
        if let Some(skipped) = self.skipping.take() {
            out.push(Piece::Oversize(skipped));
            return;
        }
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        if line.len() > self.max_line {
            out.push(Piece::Oversize(line.len()));
        } else if !line.is_empty() {
            out.push(Piece::Line(line));
        }
    }
}

fn memchr(haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == b'\n')
}

/// The reading end's handle on the pipeline: counts lines, reserves budget, sends them on.
#[derive(Debug, Clone)]
pub struct LineSender {
    tx: mpsc::Sender<Line>,
    budget: Budget,
    counters: Arc<Counters>,
}

/// The batcher is gone: nothing more can be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the agent's pipeline has stopped")]
pub struct PipelineClosed;

impl LineSender {
    pub fn new(tx: mpsc::Sender<Line>, budget: Budget, counters: Arc<Counters>) -> Self {
        Self {
            tx,
            budget,
            counters,
        }
    }

    /// Counts and sends what a splitter produced, waiting for budget and channel space.
    pub async fn send_pieces(
        &self,
        pieces: &mut Vec<Piece>,
        source: &str,
    ) -> Result<(), PipelineClosed> {
        for piece in pieces.drain(..) {
            match piece {
                Piece::Line(data) => {
                    add(&self.counters.records_read, 1);
                    add(&self.counters.bytes_read, data.len() as u64);
                    let reservation = self.budget.reserve(data.len()).await;
                    self.tx
                        .send(Line { data, reservation })
                        .await
                        .map_err(|_| PipelineClosed)?;
                }
                Piece::Oversize(len) => {
                    add(&self.counters.records_read, 1);
                    add(&self.counters.bytes_read, len as u64);
                    add(&self.counters.oversize, 1);
                    tracing::warn!(
                        source,
                        bytes = len,
                        "line larger than a Kinesis record (1 MiB): not sent"
                    );
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(max: usize, chunks: &[&[u8]]) -> Vec<Piece> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut out);
        }
        s.finish(&mut out);
        out
    }

    fn line(s: &str) -> Piece {
        Piece::Line(s.as_bytes().to_vec())
    }

    #[test]
    fn lines_are_cut_at_newlines_across_chunks_and_crlf_and_blank_lines_are_handled() {
        let out = split(100, &[b"ab", b"c\nde\r\n\n", b"f"]);
        assert_eq!(out, vec![line("abc"), line("de"), line("f")]);
    }

    #[test]
    fn a_line_longer_than_the_limit_is_reported_and_skipped_without_being_buffered() {
        let mut s = LineSplitter::new(10);
        let mut out = Vec::new();
        s.feed(b"ok\n0123456789", &mut out);
        s.feed(b"abcdef", &mut out);
        // Nothing of the long line is held beyond the limit.
        assert_eq!(s.pending(), 0);
        s.feed(&[b'x'; 10_000], &mut out);
        s.feed(b"\nnext\n", &mut out);
        assert_eq!(out, vec![line("ok"), Piece::Oversize(10_016), line("next")]);
        // Exactly at the limit is fine.
        assert_eq!(split(3, &[b"abc\n"]), vec![line("abc")]);
        assert_eq!(split(3, &[b"abcd\n"]), vec![Piece::Oversize(4)]);
    }
}
