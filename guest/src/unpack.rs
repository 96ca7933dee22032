//! Hardened, streaming tar.gz extraction.
//!
//! Only directories and regular files are created. Entries with `..`, absolute
//! paths, paths through a symlink, links, devices, FIFOs and bad names are
//! skipped and reported. Limits abort with a typed error. Truncation and
//! corruption are errors naming the entry. The `tar` crate's own `unpack`
//! cannot run on wasm32 (it sets permissions), so the loop is written here.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, UNIX_EPOCH};

use tar::EntryType;

use crate::destfs;
use crate::io::{Blame, Counting, MultiGz, Tracked, Tripped};
use crate::oserror::describe;
use crate::paths::{ancestors, clean_entry_path, display};
use crate::pattern::Patterns;
use crate::types::{
    ArchiveError, EntryKind, Filter, LimitKind, Limits, Report, SkipReason, UnpackOptions, Verdict,
};

const BLOCK: u64 = 512;
/// The largest size the ustar header's 11 octal digits can hold.
const USTAR_MAX_SIZE: u64 = 0o777_7777_7777;
/// The input's buffer, and the most of a file's body written in one call.
pub(crate) const READ_BUFFER: usize = 256 * 1024;

/// Unpack the tar.gz read from `input` into `dest` (created if missing).
/// `filter`, when given, is asked about every path after the option patterns.
pub fn unpack<R: Read>(
    input: R,
    dest: &Path,
    options: &UnpackOptions,
    filter: Option<&mut (dyn Filter + '_)>,
) -> Result<Report, ArchiveError> {
    let input = BufReader::with_capacity(READ_BUFFER, input);
    unpack_buffered(input, dest, options, filter)
}

/// [`unpack`] of an input that buffers itself (the component's chunks of
/// an input stream), decompressed straight from its buffer.
pub fn unpack_buffered<R: BufRead>(
    input: R,
    dest: &Path,
    options: &UnpackOptions,
    filter: Option<&mut (dyn Filter + '_)>,
) -> Result<Report, ArchiveError> {
    let blame = Blame::default();
    let tripped = Tripped::default();
    let gz = MultiGz::guarded(
        Tracked::new(input, blame.clone()),
        &options.limits,
        tripped.clone(),
    );
    // Decompress in large reads, not in tar's 512-byte ones: each read of a
    // gzip member updates its CRC, which in the component is a host call.
    let tar_stream = BufReader::with_capacity(READ_BUFFER, gz);
    extract(tar_stream, blame, tripped, dest, options, filter)
}

/// Unpack an uncompressed tar read from `input` (for instance the output of
/// [`crate::gunzip`] running in another sandbox instance) with the same rules
/// as [`unpack`]. A failure of `input` is a `Stream` error naming the entry
/// being read.
pub fn unpack_tar<R: Read>(
    input: R,
    dest: &Path,
    options: &UnpackOptions,
    filter: Option<&mut (dyn Filter + '_)>,
) -> Result<Report, ArchiveError> {
    let input = BufReader::with_capacity(READ_BUFFER, input);
    unpack_tar_buffered(input, dest, options, filter)
}

/// [`unpack_tar`] of an input that buffers itself (the component's chunks
/// of an input stream), read straight from its buffer.
pub fn unpack_tar_buffered<R: BufRead>(
    input: R,
    dest: &Path,
    options: &UnpackOptions,
    filter: Option<&mut (dyn Filter + '_)>,
) -> Result<Report, ArchiveError> {
    let blame = Blame::default();
    extract(
        Tracked::new(input, blame.clone()),
        blame,
        Tripped::default(),
        dest,
        options,
        filter,
    )
}

/// The most bytes a tar stream within `limits` takes: every entry's content
/// and, for each entry, its header, a GNU long-name entry for a path of up
/// to `max_path_bytes` and the padding of its body; then the end-of-archive
/// marker. What `pack` writes within the same limits never takes more, so
/// this cap (on decompressed bytes) only stops streams that are not tar
/// archives within the limits, such as gigabytes of zeros after the end.
pub fn stream_cap(limits: &Limits) -> u64 {
    let long_name = (u64::from(limits.max_path_bytes) + 1).div_ceil(BLOCK) * BLOCK;
    let per_entry = 3 * BLOCK + long_name;
    limits
        .max_total_bytes
        .saturating_add(limits.max_entries.saturating_mul(per_entry))
        .saturating_add(1 << 20)
}

/// The extraction loop over a decompressed tar stream whose source's own
/// failures are recorded in `blame`, and whose decompression (if any)
/// records in `tripped` the limit it stopped at.
fn extract<R: BufRead>(
    tar_stream: R,
    blame: Blame,
    tripped: Tripped,
    dest: &Path,
    options: &UnpackOptions,
    filter: Option<&mut (dyn Filter + '_)>,
) -> Result<Report, ArchiveError> {
    let limits = options.limits;
    for (name, value) in [
        ("max_entries", limits.max_entries),
        ("max_path_bytes", u64::from(limits.max_path_bytes)),
        ("max_depth", u64::from(limits.max_depth)),
    ] {
        if value == 0 {
            return Err(ArchiveError::InvalidOptions(format!(
                "limit {name} is 0: nothing could be unpacked; give it a value above 0"
            )));
        }
    }
    let exclude = Patterns::new(&options.exclude).map_err(ArchiveError::InvalidOptions)?;
    let io_error = |e: io::Error| ArchiveError::Io {
        path: dest.display().to_string(),
        message: describe(&e),
    };
    fs::create_dir_all(dest).map_err(io_error)?;
    let root = destfs::Dir::open(dest).map_err(io_error)?;

    let count = Rc::new(Cell::new(0u64));
    let counted = Counting::new(
        tar_stream,
        stream_cap(&limits),
        count.clone(),
        tripped.clone(),
    );
    let mut archive = tar::Archive::new(counted);

    let mut run = Unpacker {
        dest: dest.to_path_buf(),
        options,
        exclude,
        filter,
        report: Report::default(),
        known_dirs: HashSet::new(),
        dir_mtimes: Vec::new(),
        excluded_dirs: HashMap::new(),
        buf: vec![0; READ_BUFFER],
        blame,
        tripped,
        last: Vec::new(),
        settled: String::new(),
        root,
        parent: None,
        entries: 0,
        end_of_data: 0,
    };
    // Skips (padding, unread bodies) go through `Counting`'s seek.
    let entries = archive
        .entries_with_seek()
        .map_err(|e| run.read_error(e, ""))?;
    for entry in entries {
        let entry = entry.map_err(|e| run.read_error(e, &display(&run.last)))?;
        run.entry(entry)?;
    }
    // Read the rest so the gzip trailer (CRC, length) and anything after the
    // tar end-of-archive marker are checked (and a stream feeding this one
    // runs to its end).
    let mut rest = archive.into_inner();
    let last = display(&run.last);
    io::copy(&mut rest, &mut io::sink()).map_err(|e| run.read_error(e, &last))?;
    // An empty stream is no archive either (a tar of nothing still has its
    // end-of-archive marker).
    if count.get() <= run.end_of_data {
        return Err(ArchiveError::Corrupt {
            entry: last,
            message: "archive ends without an end-of-archive marker (truncated?)".into(),
        });
    }
    run.restore_dir_mtimes();
    Ok(run.report)
}

struct Unpacker<'a, 'f> {
    dest: PathBuf,
    options: &'a UnpackOptions,
    /// `options.exclude`, parsed.
    exclude: Patterns,
    filter: Option<&'a mut (dyn Filter + 'f)>,
    report: Report,
    /// Directories (relative) verified or created as real directories.
    known_dirs: HashSet<String>,
    /// Directory entries' mtimes, applied last (writing into a directory
    /// changes its mtime).
    dir_mtimes: Vec<(String, u64)>,
    /// Directory exclusion decisions, so a subtree is decided once.
    excluded_dirs: HashMap<String, bool>,
    buf: Vec<u8>,
    blame: Blame,
    tripped: Tripped,
    /// The raw name of the last entry seen, for error messages (one buffer,
    /// reused).
    last: Vec<u8>,
    /// A directory whose every ancestor, and itself, is known to be a real,
    /// not excluded directory: its files need no walk up the tree.
    settled: String,
    /// The destination, open.
    root: destfs::Dir,
    /// The directory the last file was created in (relative), open.
    parent: Option<(String, destfs::Dir)>,
    entries: u64,
    /// Decompressed offset just past the last entry's data.
    end_of_data: u64,
}

impl Unpacker<'_, '_> {
    /// Classify a failure while reading the archive.
    fn read_error(&self, e: io::Error, entry: &str) -> ArchiveError {
        if self.blame.get().is_some() {
            return self.blame.stream_error(e, entry);
        }
        if let Some(limit) = self.tripped.error(&self.options.limits, entry) {
            return limit;
        }
        ArchiveError::Corrupt {
            entry: entry.to_owned(),
            message: e.to_string(),
        }
    }

    fn limit(&self, limit: LimitKind, allowed: u64, entry: &str) -> ArchiveError {
        ArchiveError::LimitExceeded {
            limit,
            allowed,
            entry: entry.to_owned(),
        }
    }

    fn entry<R: Read>(&mut self, entry: tar::Entry<'_, R>) -> Result<(), ArchiveError> {
        let mut raw = std::mem::take(&mut self.last);
        raw.clear();
        raw.extend_from_slice(&entry.path_bytes());
        let result = self.named_entry(entry, &raw);
        self.last = raw;
        result
    }

    /// One entry, whose raw name is `raw`.
    fn named_entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        raw: &[u8],
    ) -> Result<(), ArchiveError> {
        let limits = self.options.limits;
        self.entries += 1;
        // Its display form is built only when needed (a skip, an error).
        let shown = || display(raw);
        if self.entries > limits.max_entries {
            return Err(self.limit(LimitKind::Entries, limits.max_entries, &shown()));
        }
        if raw.len() > limits.max_path_bytes as usize {
            return Err(self.limit(LimitKind::PathBytes, limits.max_path_bytes.into(), &shown()));
        }
        let header_size = entry
            .header()
            .entry_size()
            .map_err(|e| self.read_error(e, &shown()))?;
        let size = entry.size();
        // A PAX size must agree with the header's, except that pax writers
        // leave the header's size 0 for a file too large for its 11 octal
        // digits. A 0 under any smaller PAX size is the CVE-2025-62518 shape:
        // a ustar-only parser would read the body as further headers.
        let oversized = header_size == 0 && size > USTAR_MAX_SIZE;
        if header_size != size && !oversized {
            return Err(ArchiveError::Corrupt {
                entry: shown(),
                message: format!("PAX size {size} disagrees with the header's size {header_size}"),
            });
        }
        self.end_of_data = entry.raw_file_position() + size.div_ceil(BLOCK) * BLOCK;

        let kind = match entry.header().entry_type() {
            EntryType::Regular | EntryType::Continuous => EntryKind::File,
            EntryType::Directory => EntryKind::Directory,
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| format!("-> {}", display(&t)))
                    .unwrap_or_default();
                self.report.skip(shown(), SkipReason::Symlink, target);
                return Ok(());
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|t| format!("-> {}", display(&t)))
                    .unwrap_or_default();
                self.report.skip(shown(), SkipReason::HardLink, target);
                return Ok(());
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                self.report.skip(shown(), SkipReason::SpecialFile, "");
                return Ok(());
            }
            // A PAX global header carries defaults, not a file.
            EntryType::XGlobalHeader => return Ok(()),
            other => {
                self.report.skip(
                    shown(),
                    SkipReason::UnsupportedType,
                    format!("tar type {:?}", other.as_byte() as char),
                );
                return Ok(());
            }
        };

        let rel = match clean_entry_path(raw) {
            Ok(rel) => rel,
            Err(reason) => {
                self.report.skip(shown(), reason, "");
                return Ok(());
            }
        };
        if rel.is_empty() {
            return Ok(()); // the destination root itself
        }
        if rel.split('/').count() > limits.max_depth as usize {
            return Err(self.limit(LimitKind::Depth, limits.max_depth.into(), &shown()));
        }
        // Entries come mostly directory by directory: the walk up the tree,
        // for exclusion and for parents to create, is done once per run of
        // siblings (its answers for a directory never change).
        let parent = rel.rsplit_once('/').map_or("", |(parent, _)| parent);
        let settled = !parent.is_empty() && parent == self.settled;
        if !settled && self.excluded_ancestor(&rel) {
            return Ok(());
        }
        if self.excluded_itself(&rel, kind) {
            return Ok(());
        }
        if !settled {
            if let Some((reason, detail)) = self.make_parents(&rel)? {
                self.report.skip(shown(), reason, detail);
                return Ok(());
            }
            parent.clone_into(&mut self.settled);
        }
        match kind {
            EntryKind::Directory => {
                let mtime = entry.header().mtime().unwrap_or(0);
                self.directory(&rel, mtime)
            }
            EntryKind::File => {
                if size > limits.max_file_bytes {
                    return Err(self.limit(LimitKind::FileBytes, limits.max_file_bytes, &shown()));
                }
                if self.report.bytes.saturating_add(size) > limits.max_total_bytes {
                    return Err(self.limit(
                        LimitKind::TotalBytes,
                        limits.max_total_bytes,
                        &shown(),
                    ));
                }
                let mode = entry.header().mode().unwrap_or(0o644);
                let mtime = entry.header().mtime().unwrap_or(0);
                self.file(&mut entry, &rel, size, mode, mtime)
            }
        }
    }

    fn decide(&mut self, rel: &str, kind: EntryKind) -> bool {
        if self.exclude.matches(rel) {
            return true;
        }
        match self.filter.as_deref_mut() {
            Some(f) => f.check(rel, kind) == Verdict::Exclude,
            None => false,
        }
    }

    /// Whether one of `rel`'s ancestors is excluded (reported once, at the
    /// topmost excluded directory).
    fn excluded_ancestor(&mut self, rel: &str) -> bool {
        for dir in ancestors(rel) {
            match self.excluded_dirs.get(dir) {
                Some(true) => return true,
                Some(false) => {}
                None => {
                    let out = self.decide(dir, EntryKind::Directory);
                    self.excluded_dirs.insert(dir.to_owned(), out);
                    if out {
                        self.report.skip(dir, SkipReason::Excluded, "");
                        return true;
                    }
                }
            }
        }
        false
    }

    /// Whether `rel` itself is excluded (reported when it is).
    fn excluded_itself(&mut self, rel: &str, kind: EntryKind) -> bool {
        if kind == EntryKind::Directory {
            if let Some(&out) = self.excluded_dirs.get(rel) {
                return out;
            }
        }
        let out = self.decide(rel, kind);
        if kind == EntryKind::Directory {
            self.excluded_dirs.insert(rel.to_owned(), out);
        }
        if out {
            self.report.skip(rel, SkipReason::Excluded, "");
        }
        out
    }

    /// Make sure every ancestor of `rel` is a real directory (not a symlink,
    /// not a file), creating missing ones.
    fn make_parents(&mut self, rel: &str) -> Result<Option<(SkipReason, String)>, ArchiveError> {
        for dir in ancestors(rel) {
            if let Some(skip) = self.ensure_dir(dir)? {
                return Ok(Some(skip));
            }
        }
        Ok(None)
    }

    /// Create directory `rel` unless already known. mkdir never follows a
    /// symlink, so only when something is already there does it need a closer
    /// look; anything but a real directory in the way is a skip reason.
    fn ensure_dir(&mut self, rel: &str) -> Result<Option<(SkipReason, String)>, ArchiveError> {
        if self.known_dirs.contains(rel) {
            return Ok(None);
        }
        let abs = self.dest.join(rel);
        match fs::create_dir(&abs) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                match in_the_way(&abs).map_err(|e| dest_error(&abs, &e))? {
                    InTheWay::Directory => {}
                    InTheWay::Symlink => {
                        return Ok(Some((
                            SkipReason::ThroughSymlink,
                            format!("{rel} is a symlink"),
                        )))
                    }
                    InTheWay::File | InTheWay::Special => {
                        return Ok(Some((
                            SkipReason::TypeConflict,
                            format!("{rel} is not a directory"),
                        )))
                    }
                }
            }
            Err(e) => return Err(dest_error(&abs, &e)),
        }
        self.known_dirs.insert(rel.to_owned());
        Ok(None)
    }

    fn directory(&mut self, rel: &str, mtime: u64) -> Result<(), ArchiveError> {
        if let Some((reason, detail)) = self.ensure_dir(rel)? {
            self.report.skip(rel, reason, detail);
            return Ok(());
        }
        self.report.dirs += 1;
        self.dir_mtimes.push((rel.to_owned(), mtime));
        Ok(())
    }

    /// Best effort, as for files: an unchanged tree packs byte-identical.
    fn restore_dir_mtimes(&self) {
        for (rel, mtime) in &self.dir_mtimes {
            if let Ok(dir) = File::open(self.dest.join(rel)) {
                set_mtime(&dir, *mtime);
            }
        }
    }

    fn file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        rel: &str,
        size: u64,
        mode: u32,
        mtime: u64,
    ) -> Result<(), ArchiveError> {
        // Only a skip or an error needs the whole path.
        let abs = || self.dest.join(rel);
        let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let dir = match &mut self.parent {
            Some((open, dir)) if open == parent => &*dir,
            slot => {
                // Made and checked by `make_parents` (a real directory).
                let dir = (self.root.open_dir(parent))
                    .map_err(|e| dest_error(&self.dest.join(parent), &e))?;
                &slot.insert((parent.to_owned(), dir)).1
            }
        };
        // O_CREAT|O_EXCL never follows a symlink; only an existing path (a
        // duplicate entry, or something already in the destination) needs a
        // closer look before it is replaced.
        let file = match dir.create_new(name) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let abs = abs();
                match in_the_way(&abs).map_err(|e| dest_error(&abs, &e))? {
                    InTheWay::Symlink => {
                        let detail = format!("{rel} is a symlink");
                        self.report.skip(rel, SkipReason::ThroughSymlink, detail);
                        return Ok(());
                    }
                    InTheWay::Directory => {
                        let detail = format!("{rel} is a directory");
                        self.report.skip(rel, SkipReason::TypeConflict, detail);
                        return Ok(());
                    }
                    InTheWay::Special => {
                        let detail = format!("{rel} is a special file (FIFO, socket or device)");
                        self.report.skip(rel, SkipReason::TypeConflict, detail);
                        return Ok(());
                    }
                    // A duplicate entry, or a file already there: the entry
                    // wins. Replaced, not rewritten in place: the old file may
                    // be a hard link to a file outside the destination.
                    InTheWay::File => {}
                }
                fs::remove_file(&abs).map_err(|e| dest_error(&abs, &e))?;
                dir.create_new(name).map_err(|e| dest_error(&abs, &e))?
            }
            Err(e) => return Err(dest_error(&abs(), &e)),
        };
        // The body in buffer-sized writes, so a file that fits the buffer is
        // one `pwrite` however the archive's chunks cut it.
        let mut written = 0u64;
        loop {
            let n = fill(entry, &mut self.buf).map_err(|e| self.read_error(e, rel))?;
            if n == 0 {
                break;
            }
            file.write_all_at(&self.buf[..n], written)
                .map_err(|e| dest_error(&abs(), &e))?;
            written += n as u64;
            if n < self.buf.len() {
                break;
            }
        }
        if written != size {
            return Err(ArchiveError::Corrupt {
                entry: rel.to_owned(),
                message: format!("truncated: {written} of {size} bytes present"),
            });
        }
        // Best effort: keeps unchanged files byte-identical on the next pack.
        let _ = file.set_mtime(mtime);
        self.report.files += 1;
        self.report.bytes += size;
        if mode & 0o111 != 0 {
            self.report.executables.push(rel.to_owned());
        }
        Ok(())
    }
}

/// Read into `buf` until it is full or the reader ends; returns the count.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// What already occupies a destination path.
enum InTheWay {
    Directory,
    Symlink,
    File,
    /// A FIFO, socket or device: opening one could block or reach a device.
    Special,
}

fn in_the_way(abs: &Path) -> io::Result<InTheWay> {
    let md = fs::symlink_metadata(abs)?;
    let ft = md.file_type();
    Ok(if ft.is_symlink() {
        InTheWay::Symlink
    } else if ft.is_dir() {
        InTheWay::Directory
    } else if ft.is_file() {
        InTheWay::File
    } else {
        InTheWay::Special
    })
}

fn set_mtime(file: &File, mtime: u64) {
    // Best effort: keeps unchanged files byte-identical on the next pack.
    let _ = file.set_modified(UNIX_EPOCH + Duration::from_secs(mtime));
}

/// A failure writing the destination, naming the path (under the guest's
/// preopen; the host shows it as its own path).
fn dest_error(abs: &Path, e: &io::Error) -> ArchiveError {
    ArchiveError::Io {
        path: abs.display().to_string(),
        message: describe(e),
    }
}
