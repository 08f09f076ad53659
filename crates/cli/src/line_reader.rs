//! Reads lines in large blocks and hands each out as a [`Bytes`] slice of its block: no
//! allocation or copy per line, which matters at a million lines a second.

use std::io::{self, Read};

use bytes::Bytes;

/// Bytes read per block (a block grows when one line is longer than it).
const BLOCK: usize = 4 << 20;

/// Splits a reader into lines on `\n`. The newline is not part of the line; a last line without
/// one is still returned.
pub struct LineReader<R> {
    reader: R,
    block: usize,
    /// The unread part of the current block.
    chunk: Bytes,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    pub fn new(reader: R) -> Self {
        Self::with_block_size(reader, BLOCK)
    }

    pub fn with_block_size(reader: R, block: usize) -> Self {
        Self {
            reader,
            block: block.max(1),
            chunk: Bytes::new(),
            eof: false,
        }
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.chunk) {
                let line = self.chunk.split_to(i + 1);
                return Ok(Some(line.slice(..i)));
            }
            if self.eof {
                return Ok((!self.chunk.is_empty()).then(|| std::mem::take(&mut self.chunk)));
            }
            self.refill()?;
        }
    }

    /// Reads the next block, starting with the unfinished line left from the last one.
    fn refill(&mut self) -> io::Result<()> {
        let rest = std::mem::take(&mut self.chunk);
        let mut buf = vec![0u8; self.block.max(rest.len() * 2)];
        buf[..rest.len()].copy_from_slice(&rest);
        let mut filled = rest.len();
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        self.chunk = Bytes::from(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &str, block: usize) -> io::Result<Vec<String>> {
        let mut reader = LineReader::with_block_size(input.as_bytes(), block);
        let mut out = Vec::new();
        while let Some(line) = reader.next_line()? {
            out.push(String::from_utf8_lossy(&line).into_owned());
        }
        Ok(out)
    }

    #[test]
    fn splits_lines_across_block_boundaries_and_keeps_a_last_line_without_newline() -> io::Result<()>
    {
        let input = "first\n\nthird line is longer than a block\r\nlast";
        let want = ["first", "", "third line is longer than a block\r", "last"];
        for block in [1, 2, 3, 5, 8, 64, 4096] {
            assert_eq!(lines(input, block)?, want, "block of {block}");
        }
        assert_eq!(lines("one\n", 4)?, ["one"]);
        assert!(lines("", 4)?.is_empty());
        Ok(())
    }
}
