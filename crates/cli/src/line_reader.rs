//! Reads lines in large blocks and lends each out as a slice of its block: no allocation, copy
//! or reference count per line, which matters at a million lines a second. A line is meant to
//! be decoded before the next one is read, while its bytes are still in the CPU cache.
//!
//! - A regular file is mapped into memory a window at a time ([`LineReader::mapped`]): lines are
//!   slices of the page cache itself, with no `read` copying them first (that copy was 7% of
//!   the CPU time of `sluice ingest`).
//! - Anything else (stdin, a pipe) is read into one block, which is read into again once its
//!   lines are used up (fresh memory costs a page fault per 4 KiB).

use std::fs::File;
use std::io::{self, Read};

/// Bytes read per block, or mapped per window (either grows when one line is longer).
const BLOCK: usize = 4 << 20;

/// Where the blocks come from.
enum Source<R> {
    Read {
        reader: R,
        /// The block: `buf[..filled]` holds input.
        buf: Vec<u8>,
        filled: usize,
    },
    Mapped {
        file: File,
        /// The file's length when it was opened: what is appended later is not read.
        len: u64,
        /// The file offset just past the current window.
        end: u64,
        window: Option<memmap2::Mmap>,
    },
}

impl<R> Source<R> {
    /// The current block.
    fn bytes(&self) -> &[u8] {
        match self {
            Source::Read { buf, filled, .. } => &buf[..*filled],
            Source::Mapped { window, .. } => window.as_deref().unwrap_or_default(),
        }
    }
}

/// Splits its input into lines on `\n`. The newline is not part of the line; a last line without
/// one is still returned.
pub struct LineReader<R> {
    source: Source<R>,
    block: usize,
    /// Where the unread part of the current block starts.
    pos: usize,
    eof: bool,
}

impl<R: Read> LineReader<R> {
    pub fn new(reader: R) -> Self {
        Self::with_block_size(reader, BLOCK)
    }

    pub fn with_block_size(reader: R, block: usize) -> Self {
        Self::from_source(
            Source::Read {
                reader,
                buf: Vec::new(),
                filled: 0,
            },
            block,
        )
    }

    /// The first `len` bytes (the file's length, from the caller's metadata) of a regular file,
    /// mapped into memory a window at a time.
    ///
    /// Another process truncating the file while it is mapped makes the next access to the lost
    /// pages fail with `SIGBUS`, as with any tool that maps its input; read such files with
    /// [`LineReader::new`] instead.
    pub fn mapped(file: File, len: u64) -> Self {
        Self::mapped_with_window(file, len, BLOCK)
    }

    pub fn mapped_with_window(file: File, len: u64, window: usize) -> Self {
        Self::from_source(
            Source::Mapped {
                file,
                len,
                end: 0,
                window: None,
            },
            window,
        )
    }

    fn from_source(source: Source<R>, block: usize) -> Self {
        Self {
            source,
            block: block.max(1),
            pos: 0,
            eof: false,
        }
    }

    /// The next line, or `None` at the end of the input. It borrows the reader until the next
    /// call.
    pub fn next_line(&mut self) -> io::Result<Option<&[u8]>> {
        loop {
            let start = self.pos;
            if let Some(i) = memchr::memchr(b'\n', &self.source.bytes()[start..]) {
                self.pos = start + i + 1;
                return Ok(Some(&self.source.bytes()[start..start + i]));
            }
            if self.eof {
                let end = self.source.bytes().len();
                self.pos = end;
                return Ok((end > start).then(|| &self.source.bytes()[start..end]));
            }
            self.refill()?;
        }
    }

    /// Makes the next block current, starting with the unfinished line left from the last one.
    fn refill(&mut self) -> io::Result<()> {
        let rest = self.source.bytes().len() - self.pos;
        let size = self.block.max(rest * 2);
        match &mut self.source {
            Source::Read {
                reader,
                buf,
                filled,
            } => {
                buf.copy_within(self.pos..*filled, 0);
                // Grown only when a line outgrows the block; otherwise the read overwrites the
                // old bytes instead of zeroing them first (a 4 MiB memset per block).
                if buf.len() < size {
                    buf.resize(size, 0);
                }
                *filled = rest;
                while *filled < buf.len() {
                    match reader.read(&mut buf[*filled..]) {
                        Ok(0) => {
                            self.eof = true;
                            break;
                        }
                        Ok(n) => *filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Source::Mapped {
                file,
                len,
                end,
                window,
            } => {
                // The window starts at the unfinished line, so no line is ever copied.
                let start = *end - rest as u64;
                let stop = (*len).min(start.saturating_add(size as u64));
                // The old window is unmapped before the next is mapped.
                *window = None;
                *window = map_window(file, start, stop)?;
                *end = stop;
                self.eof = stop == *len;
            }
        }
        self.pos = 0;
        Ok(())
    }
}

/// Bytes `start..stop` of `file`, mapped read-only (`None` when empty).
fn map_window(file: &File, start: u64, stop: u64) -> io::Result<Option<memmap2::Mmap>> {
    if stop <= start {
        return Ok(None);
    }
    let len = usize::try_from(stop - start).map_err(io::Error::other)?;
    // SAFETY: the map is read-only and private to this process, and lines are only ever
    // shared views of it. What `Mmap` cannot rule out is another process truncating the file
    // while it is mapped, which makes the next access to the lost pages raise `SIGBUS`: the
    // documented caveat of `LineReader::mapped` (and of every tool that maps its input), which
    // callers avoid with `--no-mmap`.
    #[allow(unsafe_code)]
    let map = unsafe {
        memmap2::MmapOptions::new()
            .offset(start)
            .len(len)
            .map(file)?
    };
    Ok(Some(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines<R: Read>(mut reader: LineReader<R>) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        while let Some(line) = reader.next_line()? {
            out.push(String::from_utf8_lossy(line).into_owned());
        }
        Ok(out)
    }

    fn lines(input: &str, block: usize) -> io::Result<Vec<String>> {
        all_lines(LineReader::with_block_size(input.as_bytes(), block))
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

    fn mapped_lines(input: &str, window: usize) -> io::Result<Vec<String>> {
        let mut file = tempfile::tempfile()?;
        std::io::Write::write_all(&mut file, input.as_bytes())?;
        let len = input.len() as u64;
        all_lines(LineReader::<io::Empty>::mapped_with_window(
            file, len, window,
        ))
    }

    #[test]
    fn a_mapped_file_gives_the_same_lines_as_reading_it_whatever_the_window() -> io::Result<()> {
        let inputs = [
            "first\n\nthird line is longer than a window\r\nlast",
            "one\n",
            "\n\n",
            "no newline at all",
            "",
        ];
        for input in inputs {
            let read = lines(input, 4096)?;
            for window in [1, 2, 3, 5, 8, 64, 4096] {
                assert_eq!(
                    mapped_lines(input, window)?,
                    read,
                    "{input:?}, window {window}"
                );
            }
        }
        Ok(())
    }

    #[test]
    fn reads_into_the_same_block_again_instead_of_allocating_more() -> io::Result<()> {
        let input = "aaaa\nbbbb\ncccc\ndddd\n".repeat(4);
        let mut reader = LineReader::with_block_size(input.as_bytes(), 10);
        let first_block = reader.next_line()?.expect("a line").as_ptr() as usize;
        let mut lines = 1;
        let mut reused = 0;
        while let Some(line) = reader.next_line()? {
            assert_eq!(line.len(), 4);
            lines += 1;
            let at = line.as_ptr() as usize;
            assert!(
                (first_block..first_block + 10).contains(&at),
                "line {lines} is outside the one block"
            );
            reused += usize::from(at == first_block);
        }
        assert_eq!(lines, 16);
        assert!(
            reused >= 7,
            "the block was read into again only {reused} times"
        );
        Ok(())
    }
}
