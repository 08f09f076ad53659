//! Reads lines in large blocks and hands each out as a [`Bytes`] slice of its block: no
//! allocation or copy per line, which matters at a million lines a second.
//!
//! - A regular file is mapped into memory a window at a time ([`LineReader::mapped`]): lines are
//!   slices of the page cache itself, with no `read` copying them first (that copy was 7% of
//!   the CPU time of `sluice ingest`). A window is unmapped once no line refers to it.
//! - Anything else (stdin, a pipe) is read into blocks. A block whose lines have all been dropped
//!   is read into again: fresh memory costs a page fault per 4 KiB.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, Read};

use bytes::{Buf as _, Bytes, BytesMut};

/// Bytes read per block, or mapped per window (either grows when one line is longer).
const BLOCK: usize = 4 << 20;
/// Blocks kept for reuse at most (a batch of 100,000 lines of 400 bytes spans ten).
const KEPT_BLOCKS: usize = 32;

/// Where the blocks come from.
enum Source<R> {
    Read {
        reader: R,
        /// Every block handed out, oldest first, until it can be read into again.
        blocks: VecDeque<Bytes>,
    },
    Mapped {
        file: File,
        /// The file's length when it was opened: what is appended later is not read.
        len: u64,
        /// The file offset just past the current window.
        end: u64,
    },
}

/// Splits its input into lines on `\n`. The newline is not part of the line; a last line without
/// one is still returned.
pub struct LineReader<R> {
    source: Source<R>,
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
        Self::from_source(
            Source::Read {
                reader,
                blocks: VecDeque::new(),
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
        Self::from_source(Source::Mapped { file, len, end: 0 }, window)
    }

    fn from_source(source: Source<R>, block: usize) -> Self {
        Self {
            source,
            block: block.max(1),
            chunk: Bytes::new(),
            eof: false,
        }
    }

    /// The next line, or `None` at the end of the input.
    pub fn next_line(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            if let Some(i) = memchr::memchr(b'\n', &self.chunk) {
                // One reference count taken per line (`split_to` then `slice` took two and
                // dropped one: atomic operations, at a million lines a second).
                let line = self.chunk.slice(..i);
                self.chunk.advance(i + 1);
                return Ok(Some(line));
            }
            if self.eof {
                return Ok((!self.chunk.is_empty()).then(|| std::mem::take(&mut self.chunk)));
            }
            self.refill()?;
        }
    }

    /// Makes the next block current, starting with the unfinished line left from the last one.
    fn refill(&mut self) -> io::Result<()> {
        let size = self.block.max(self.chunk.len() * 2);
        match &mut self.source {
            Source::Read { reader, blocks } => {
                let rest = std::mem::take(&mut self.chunk);
                let (block, eof) = read_block(reader, blocks, size, self.block, &rest)?;
                self.chunk = block;
                self.eof = eof;
            }
            Source::Mapped { file, len, end } => {
                // The window starts at the unfinished line, so no line is ever copied.
                let start = *end - self.chunk.len() as u64;
                let stop = (*len).min(start.saturating_add(size as u64));
                self.chunk = map_window(file, start, stop)?;
                *end = stop;
                self.eof = stop == *len;
            }
        }
        Ok(())
    }
}

/// Reads a block that starts with `rest`; true when the reader is exhausted.
fn read_block<R: Read>(
    reader: &mut R,
    blocks: &mut VecDeque<Bytes>,
    size: usize,
    reusable: usize,
    rest: &[u8],
) -> io::Result<(Bytes, bool)> {
    let mut buf = reusable_block(blocks, size, reusable);
    // A reused block keeps its old bytes rather than being zeroed again (a 4 MiB memset per
    // block): the read overwrites them, and only what it filled is kept.
    buf.truncate(size);
    buf.resize(size, 0);
    buf[..rest.len()].copy_from_slice(rest);
    let mut filled = rest.len();
    let mut eof = false;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => {
                eof = true;
                break;
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    let block = buf.freeze();
    blocks.push_back(block.clone());
    if blocks.len() > KEPT_BLOCKS {
        blocks.pop_front();
    }
    Ok((block, eof))
}

/// A block of at least `reusable` bytes that no line refers to any more, or new memory.
fn reusable_block(blocks: &mut VecDeque<Bytes>, size: usize, reusable: usize) -> BytesMut {
    let free = blocks
        .iter()
        .position(|b| b.is_unique() && b.len() >= reusable);
    free.and_then(|i| blocks.remove(i))
        .and_then(|b| b.try_into_mut().ok())
        .unwrap_or_else(|| BytesMut::with_capacity(size))
}

/// Bytes `start..stop` of `file`, mapped read-only.
fn map_window(file: &File, start: u64, stop: u64) -> io::Result<Bytes> {
    if stop <= start {
        return Ok(Bytes::new());
    }
    let len = usize::try_from(stop - start).map_err(io::Error::other)?;
    // SAFETY: the map is read-only and private to this process, and `Bytes` never hands out
    // a mutable view of it. What `Mmap` cannot rule out is another process truncating the file
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
    Ok(Bytes::from_owner(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_lines<R: Read>(mut reader: LineReader<R>) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        while let Some(line) = reader.next_line()? {
            out.push(String::from_utf8_lossy(&line).into_owned());
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
    fn reads_into_a_block_again_once_its_lines_are_dropped() -> io::Result<()> {
        let input = "aaaa\nbbbb\ncccc\ndddd\n".repeat(4);
        let mut reader = LineReader::with_block_size(input.as_bytes(), 10);
        let first = reader.next_line()?.expect("a line");
        let first_block = first.as_ptr();
        let mut kept = vec![first];
        // While a line of it is alive, the first block is not reused.
        for _ in 0..3 {
            let line = reader.next_line()?.expect("a line");
            assert_eq!(line.len(), 4);
            kept.push(line);
        }
        assert!(kept.iter().skip(2).all(|l| l.as_ptr() != first_block));
        drop(kept);
        let mut reused = false;
        while let Some(line) = reader.next_line()? {
            assert_eq!(line.len(), 4);
            reused |= line.as_ptr() == first_block;
        }
        assert!(reused, "no block was read into again");
        Ok(())
    }
}
