//! Packing a directory into a deterministic tar.gz.
//!
//! Entries are visited in byte-wise sorted order, paths are relative and
//! `/`-separated, modes are normalised (0644 files, 0755 directories and
//! executables), owners are zeroed, symlinks and special files are skipped and
//! reported, and unreadable entries are skipped and reported while the pack
//! goes on, as are entries that would break the options' limits (so that an
//! unpack with the same limits reads back whatever a pack writes). The `tar` crate's `append_path`/`append_dir_all` cannot run on
//! wasm32, so headers are built here and written with `append` (names too:
//! see [`append_named`]).

use std::ffi::OsString;
use std::io::{self, BufWriter, Read, Write};
use std::path::Path;

use tar::{EntryType, Header};

use crate::ending::Ending;
use crate::gz::{finish_gz, gz_sink};
use crate::gzframe::check_level;
use crate::io::{Blame, Gated, Tracked};
use crate::oserror::describe;
use crate::pattern::Patterns;
use crate::srcfs::{Dir, Kind, Listing, SrcFile, Stat};
use crate::types::{ArchiveError, EntryKind, Filter, PackOptions, Report, SkipReason, Verdict};

const COPY_BUFFER: usize = 256 * 1024;

/// Pack directory `src` as tar.gz into `out`. `filter`, when given, is asked
/// about every path after the option patterns. `out` is flushed, and returned.
pub fn pack<W: Write>(
    src: &Path,
    out: W,
    options: &PackOptions,
    filter: Option<&mut (dyn Filter + '_)>,
) -> Result<(Report, W), ArchiveError> {
    check_level(options.level)?;
    // The source first: a pack that cannot start writes nothing at all.
    let root = Dir::open_root(src).map_err(|e| io_error(src, &e))?;
    let blame = Blame::default();
    // No gate: the gzip sink writes no trailer unless finished.
    let sink = gz_sink(out, options.level, &blame);
    let (report, sink) = walk_into(root, sink, options, filter, &blame, None)?;
    Ok((report, finish_gz(sink, &blame)?))
}

/// Pack directory `src` as an uncompressed tar into `out` (the same entries,
/// byte for byte, as the tar inside [`pack`]'s tar.gz); `gzip` it separately,
/// e.g. in another sandbox instance running alongside. `options.level` is
/// checked but not used.
pub fn pack_tar<W: Write>(
    src: &Path,
    out: W,
    options: &PackOptions,
    filter: Option<&mut (dyn Filter + '_)>,
) -> Result<(Report, W), ArchiveError> {
    check_level(options.level)?;
    let root = Dir::open_root(src).map_err(|e| io_error(src, &e))?;
    let blame = Blame::default();
    let ending = Ending::new();
    let buffered = BufWriter::with_capacity(
        COPY_BUFFER,
        Gated::new(Tracked::new(out, blame.clone()), ending.clone()),
    );
    let (report, buffered) = walk_into(root, buffered, options, filter, &blame, Some(&ending))?;
    let mut gated = buffered
        .into_inner()
        .map_err(|e| blame.stream_error(e.into_error(), ""))?;
    gated.flush().map_err(|e| blame.stream_error(e, ""))?;
    Ok((report, gated.into_inner().into_inner()))
}

/// Walk `src` (listed as `root`) and write its entries and the
/// end-of-archive marker into `sink`, and say how that ended in `ending`
/// (for a plain tar sink behind [`Gated`]). A failure is said before the
/// sink is dropped: `tar::Builder` writes the end-of-archive marker when
/// dropped, which would make a failed tar look complete. (A gzip sink
/// needs none: it writes no trailer unless finished.)
fn walk_into<T: Write>(
    root: (Dir, Listing),
    sink: T,
    options: &PackOptions,
    filter: Option<&mut (dyn Filter + '_)>,
    blame: &Blame,
    ending: Option<&Ending>,
) -> Result<(Report, T), ArchiveError> {
    let exclude = Patterns::new(&options.exclude).map_err(ArchiveError::InvalidOptions)?;
    let mut packer = Packer {
        builder: tar::Builder::new(sink),
        options,
        exclude,
        filter,
        report: Report::default(),
        entries: 0,
        blame: blame.clone(),
        copy: vec![0; COPY_BUFFER].into_boxed_slice(),
    };
    let fail = |e: &ArchiveError| {
        if let Some(ending) = ending {
            ending.fail(e.to_string());
        }
    };
    if let Err(e) = packer.walk(&root.0, root.1, "") {
        fail(&e);
        return Err(e);
    }
    match packer.builder.into_inner() {
        Ok(sink) => {
            if let Some(ending) = ending {
                ending.finish();
            }
            Ok((packer.report, sink))
        }
        Err(e) => {
            let e = packer.blame.stream_error(e, "");
            fail(&e);
            Err(e)
        }
    }
}

struct Packer<'a, 'f, W: Write> {
    builder: tar::Builder<W>,
    options: &'a PackOptions,
    /// `options.exclude`, parsed.
    exclude: Patterns,
    filter: Option<&'a mut (dyn Filter + 'f)>,
    report: Report,
    /// Entries written.
    entries: u64,
    blame: Blame,
    /// The one buffer file bodies are copied through (allocated and zeroed
    /// once per pack, not once per file).
    copy: Box<[u8]>,
}

impl<W: Write> Packer<'_, '_, W> {
    fn decide(&mut self, rel: &str, kind: EntryKind) -> Verdict {
        if self.exclude.matches(rel) {
            return Verdict::Exclude;
        }
        match self.filter.as_deref_mut() {
            Some(f) => f.check(rel, kind),
            None => Verdict::Keep,
        }
    }

    /// Why an entry named `name` in the archive (a directory's with its
    /// `/`) may not be added under the limits, before its size is known.
    fn over_limit(&self, name: &str) -> Option<String> {
        let limits = &self.options.limits;
        let depth = name.trim_end_matches('/').split('/').count();
        if depth > limits.max_depth as usize {
            return Some(format!(
                "nested {depth} levels deep, over max_depth {}",
                limits.max_depth
            ));
        }
        if name.len() > limits.max_path_bytes as usize {
            return Some(format!(
                "a path of {} bytes, over max_path_bytes {}",
                name.len(),
                limits.max_path_bytes
            ));
        }
        if self.entries >= limits.max_entries {
            return Some(format!("max_entries {} reached", limits.max_entries));
        }
        None
    }

    /// Why a file of `size` bytes may not be added under the limits.
    fn over_size(&self, size: u64) -> Option<String> {
        let limits = &self.options.limits;
        if size > limits.max_file_bytes {
            return Some(format!(
                "{size} bytes, over max_file_bytes {}",
                limits.max_file_bytes
            ));
        }
        if self.report.bytes.saturating_add(size) > limits.max_total_bytes {
            return Some(format!(
                "{size} bytes more would pass max_total_bytes {}",
                limits.max_total_bytes
            ));
        }
        None
    }

    fn walk(&mut self, dir: &Dir, listing: Listing, prefix: &str) -> Result<(), ArchiveError> {
        // The listing carries each entry's type: no stat per entry is needed
        // to tell files, directories and links apart.
        let mut entries = Vec::new();
        for item in listing {
            match item {
                Ok(e) => entries.push(e),
                Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                    self.report
                        .skip(prefix, SkipReason::NonUtf8Name, describe(&e))
                }
                Err(e) => self
                    .report
                    .skip(prefix, SkipReason::Unreadable, describe(&e)),
            }
        }
        entries.sort_by(|a, b| a.0.as_encoded_bytes().cmp(b.0.as_encoded_bytes()));
        for (name, listed) in entries {
            let Some(utf8) = name.to_str() else {
                let shown = join(prefix, &name.to_string_lossy());
                self.report.skip(shown, SkipReason::NonUtf8Name, "");
                continue;
            };
            let rel = join(prefix, utf8);
            let kind = match listed {
                Kind::Unknown => match dir.stat_at(&name) {
                    Ok(st) => st.kind,
                    Err(e) => {
                        self.report.skip(rel, SkipReason::Unreadable, describe(&e));
                        continue;
                    }
                },
                kind => kind,
            };
            match kind {
                Kind::Symlink => {
                    let target = dir
                        .read_link(&name)
                        .map(|t| format!("-> {t}"))
                        .unwrap_or_default();
                    self.report.skip(rel, SkipReason::Symlink, target);
                }
                Kind::Dir => self.directory(dir, &name, &rel)?,
                Kind::File => self.file(dir, &name, &rel)?,
                Kind::Special | Kind::Unknown => self.report.skip(rel, SkipReason::SpecialFile, ""),
            }
        }
        Ok(())
    }

    fn directory(&mut self, parent: &Dir, name: &OsString, rel: &str) -> Result<(), ArchiveError> {
        if self.decide(rel, EntryKind::Directory) == Verdict::Exclude {
            self.report.skip(rel, SkipReason::Excluded, "");
            return Ok(());
        }
        let entry_name = format!("{rel}/");
        if let Some(why) = self.over_limit(&entry_name) {
            let detail = format!("{why}; nothing in it packed either");
            self.report.skip(rel, SkipReason::OverLimit, detail);
            return Ok(());
        }
        let (dir, stat, listing) = match parent.open_dir(name) {
            Ok(opened) => opened,
            Err(e) => {
                self.report.skip(rel, SkipReason::Unreadable, describe(&e));
                return Ok(());
            }
        };
        let mut header = base_header(EntryType::Directory, 0o755, &stat);
        header.set_size(0);
        append_named(&mut self.builder, &mut header, &entry_name, io::empty())
            .map_err(|e| self.blame.stream_error(e, rel))?;
        self.entries += 1;
        self.report.dirs += 1;
        self.walk(&dir, listing, rel)
    }

    fn file(&mut self, parent: &Dir, name: &OsString, rel: &str) -> Result<(), ArchiveError> {
        let verdict = self.decide(rel, EntryKind::File);
        if verdict == Verdict::Exclude {
            self.report.skip(rel, SkipReason::Excluded, "");
            return Ok(());
        }
        if let Some(why) = self.over_limit(rel) {
            self.report.skip(rel, SkipReason::OverLimit, why);
            return Ok(());
        }
        let (file, stat) = match parent.open_file(name) {
            Ok(opened) => opened,
            Err(e) => {
                self.report.skip(rel, SkipReason::Unreadable, describe(&e));
                return Ok(());
            }
        };
        match stat.kind {
            Kind::File => {}
            // Replaced since it was listed. (The ccws host opens without
            // blocking, so a FIFO's open returned; nothing is read from it.
            // WASI hosts may call a FIFO or a socket of unknown type.)
            Kind::Special | Kind::Unknown => {
                let detail = "became a FIFO, socket or device after it was listed";
                self.report.skip(rel, SkipReason::SpecialFile, detail);
                return Ok(());
            }
            _ => {
                let detail = "no longer a regular file";
                self.report.skip(rel, SkipReason::Unreadable, detail);
                return Ok(());
            }
        }
        let size = stat.size;
        if let Some(why) = self.over_size(size) {
            self.report.skip(rel, SkipReason::OverLimit, why);
            return Ok(());
        }
        let executable = verdict == Verdict::KeepExecutable || stat.executable;
        let mut header = base_header(
            EntryType::Regular,
            if executable { 0o755 } else { 0o644 },
            &stat,
        );
        header.set_size(size);
        let mut body = SizedReader {
            file,
            size,
            pos: 0,
            failure: None,
        };
        append_file(
            &mut self.builder,
            &mut header,
            rel,
            &mut body,
            &mut self.copy,
        )
        .map_err(|e| self.blame.stream_error(e, rel))?;
        if let Some(why) = body.failure {
            self.report.skip(rel, SkipReason::Unreadable, why);
        }
        self.entries += 1;
        self.report.files += 1;
        self.report.bytes += size;
        if executable {
            self.report.executables.push(rel.to_owned());
        }
        Ok(())
    }
}

/// Append an entry whose name is `name`, byte for byte (after a GNU long-name
/// entry when it is over 100 bytes). The tar crate's own path handling
/// (`append_data`) treats `\` as a separator on wasm32, so a legal Unix name
/// such as `a\b` failed the whole pack, or past 100 bytes was silently stored
/// as `a/b`. Any other name gets the same bytes as `append_data` writes.
fn append_named<W: Write, R: Read>(
    builder: &mut tar::Builder<W>,
    header: &mut Header,
    name: &str,
    data: R,
) -> io::Result<()> {
    set_name(builder, header, name)?;
    builder.append(header, data)
}

/// Append a regular file entry: header (as [`append_named`]), then exactly
/// the header's size of `body` copied through `buf`, then the padding to the
/// next 512-byte block. `tar::Builder::append` would copy through its own
/// small buffer, or through a `BufReader` that is allocated and zeroed for
/// every file.
fn append_file<W: Write>(
    builder: &mut tar::Builder<W>,
    header: &mut Header,
    name: &str,
    body: &mut SizedReader,
    buf: &mut [u8],
) -> io::Result<()> {
    set_name(builder, header, name)?;
    let out = builder.get_mut();
    out.write_all(header.as_bytes())?;
    loop {
        let n = body.read(buf)?;
        if n == 0 {
            break;
        }
        out.write_all(&buf[..n])?;
    }
    let tail = (body.size % 512) as usize;
    if tail != 0 {
        out.write_all(&[0u8; 512][tail..])?;
    }
    Ok(())
}

/// Put `name` into `header` byte for byte, writing a GNU long-name entry
/// first when it is over 100 bytes; sets the checksum.
fn set_name<W: Write>(
    builder: &mut tar::Builder<W>,
    header: &mut Header,
    name: &str,
) -> io::Result<()> {
    let bytes = name.as_bytes();
    let field = &mut header.as_old_mut().name;
    field.fill(0);
    if bytes.len() <= field.len() {
        field[..bytes.len()].copy_from_slice(bytes);
    } else {
        let mut long = Header::new_gnu();
        long.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
        long.set_mode(0o644);
        long.set_uid(0);
        long.set_gid(0);
        long.set_mtime(0);
        long.set_size(bytes.len() as u64 + 1);
        long.set_entry_type(EntryType::GNULongName);
        long.set_cksum();
        builder.append(&long, bytes.chain(&[0u8][..]))?;
        // The header keeps a truncated copy, cut on a character boundary.
        let mut cut = field.len();
        while !name.is_char_boundary(cut) {
            cut -= 1;
        }
        field[..cut].copy_from_slice(&bytes[..cut]);
    }
    header.set_cksum();
    Ok(())
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}/{name}")
    }
}

fn base_header(kind: EntryType, mode: u32, stat: &Stat) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(stat.mtime);
    h
}

fn io_error(path: &Path, e: &io::Error) -> ArchiveError {
    ArchiveError::Io {
        path: path.display().to_string(),
        message: describe(e),
    }
}

/// Yields exactly `size` bytes of a file: a file that shrinks or fails while
/// being read is padded with zeros (the header is already written) and the
/// failure is recorded for the report.
struct SizedReader {
    file: SrcFile,
    size: u64,
    pos: u64,
    failure: Option<String>,
}

impl Read for SizedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.size - self.pos;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let buf = &mut buf[..want];
        let n = if self.failure.is_some() {
            0
        } else {
            match self.file.read_at(buf, self.pos) {
                Ok(0) => {
                    self.failure = Some(format!(
                        "file shrank while packing: {} of {} bytes read, rest zero-filled",
                        self.pos, self.size
                    ));
                    0
                }
                Ok(n) => n,
                Err(e) => {
                    self.failure = Some(format!(
                        "read failed after {} bytes ({}); rest zero-filled",
                        self.pos,
                        describe(&e)
                    ));
                    0
                }
            }
        };
        let n = if n == 0 {
            buf.fill(0);
            want
        } else {
            n
        };
        self.pos += n as u64;
        Ok(n)
    }
}
