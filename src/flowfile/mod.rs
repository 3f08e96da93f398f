//! Recordings: one or more mitmproxy flow files, memory-mapped and read without copying bodies.
//!
//! [`Recording::open`] maps each `-S` file, sniffs its format and reads it with [`mitm::read_flows`];
//! afterwards the recording keeps only a 32-byte [`mitm::FlowEntry`] per HTTP flow, and
//! [`Recording::flow`] re-reads a flow's request and response dicts into borrowed [`FlowView`]s.
//! This file is the only place in the core that touches the file system (the mapping).

pub mod compressed;
pub mod har;
pub mod mitm;
pub mod tnetstring;
pub mod view;
pub mod writer;

#[cfg(test)]
mod tests;

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

use thiserror::Error;

pub use compressed::{Compression, DecompressError};
pub use har::{is_har, HarError};
pub use mitm::{ErrorKind, FlowError, FormatVersion, SkippedKinds};
pub use view::{ErrorView, FlowView, HeaderIter, Headers, KeyFields, RequestView, ResponseView};

use mitm::{FileContents, FlowEntry, ReadEvent};

/// The bytes of one file: a read-only mapping, a private copy of the file, or owned bytes (a
/// decompressed file, tests, generated data).
enum Backing {
    Mapped(memmap2::Mmap),
    Copied(Vec<u8>),
    Owned(Vec<u8>),
    Empty,
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Copied(v) | Backing::Owned(v) => v,
            Backing::Empty => &[],
        }
    }
}

/// One file of a recording.
struct SourceFile {
    /// Path as given on the command line (or a name for in-memory data).
    path: PathBuf,
    /// The file's bytes.
    backing: Backing,
    /// The compression the file was stored in (its bytes are then decompressed, on the heap).
    compression: Option<Compression>,
    /// Of a HAR file: its own size (its backing holds the flows made of it).
    har_len: Option<u64>,
}

/// Options for loading.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    /// Skip flows that cannot be read, warning once per flow, instead of refusing the file.
    pub skip_bad_flows: bool,
    /// The most bytes a compressed file may decompress to (`None`: no bound); the drivers pass
    /// the machine's physical memory.
    pub max_decompressed: Option<u64>,
    /// Files up to this many bytes are read into private memory, so that rewriting or truncating
    /// one while it is served changes nothing that is served; larger ones are mapped
    /// ([`LoadEvent::Mapped`] says so). `None`: every file is mapped (inspect and convert, which
    /// read a file once and exit). The server passes half the machine's physical memory.
    pub private_copy_up_to: Option<u64>,
}

/// Counts describing what was loaded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadSummary {
    /// HTTP flows kept (with or without response).
    pub http_flows: u64,
    /// HTTP flows without a response.
    pub without_response: u64,
    /// Non-HTTP flows skipped, by kind.
    pub skipped: SkippedKinds,
    /// Bad flows skipped with `--skip-bad-flows`.
    pub bad_flows: u64,
    /// Format versions seen across all files.
    pub versions: BTreeSet<FormatVersion>,
    /// Total bytes of all files (of compressed files: once decompressed; of HAR files: the JSON).
    pub bytes: u64,
    /// Bytes of compressed files decompressed into memory (heap, not a mapping).
    pub decompressed_bytes: u64,
    /// Bytes of format-21 flows made in memory from HAR files (heap, not a mapping).
    pub har_bytes: u64,
    /// Bytes of plain files read into private memory instead of mapped
    /// ([`LoadOptions::private_copy_up_to`]).
    pub copied_bytes: u64,
    /// Number of files.
    pub files: usize,
}

impl LoadSummary {
    /// Heap bytes holding file contents in place of a mapping (private copies, decompressed
    /// files, HAR conversions): left out of "heap per flow" figures.
    pub fn in_memory_file_bytes(&self) -> u64 {
        self.copied_bytes + self.decompressed_bytes + self.har_bytes
    }
}

/// What to do about a bad flow that made a file be refused.
fn advice_for(error: &FlowError) -> &'static str {
    match error.kind {
        ErrorKind::TruncatedFlow { .. } => "; use --skip-bad-flows to load the flows before it",
        _ => "",
    }
}

/// What a path names when it is not a regular file (recordings must be regular files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotRegular {
    /// A directory.
    Directory,
    /// A FIFO (named pipe).
    Fifo,
    /// A Unix socket.
    Socket,
    /// A character device other than `/dev/null`.
    CharDevice,
    /// A block device.
    BlockDevice,
}

/// The sentence for a path that is not a regular file (`path` is what was given).
fn not_regular(what: NotRegular, path: &Path) -> String {
    let p = path.display();
    match what {
        NotRegular::Directory => format!(
            "{p} is a directory, not a flow file: name the files in it, e.g. -S {}/*.flows",
            p.to_string().trim_end_matches('/')
        ),
        NotRegular::Fifo => format!(
            "{p} is a FIFO (named pipe), not a regular file: recordings are memory-mapped, so save \
             the stream to a file first (e.g. cat {p} > recording.flows) and name that file"
        ),
        NotRegular::Socket => {
            format!("{p} is a Unix socket, not a regular file: name a recording file")
        }
        NotRegular::CharDevice => format!(
            "{p} is a character device, not a regular file: name a recording file (/dev/null is \
             the one device accepted, as an empty recording)"
        ),
        NotRegular::BlockDevice => {
            format!("{p} is a block device, not a regular file: name a recording file")
        }
    }
}

/// Why a recording could not be loaded. Displays as one sentence naming the file.
#[derive(Debug, Error)]
pub enum LoadError {
    /// The file could not be opened or mapped.
    #[error("{path}: cannot read the file: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A flow in the file is bad (refusing the file; a cut-off file gets the advice to skip it).
    #[error("{path}: {error}{}", advice_for(error))]
    Flow {
        /// The file.
        path: PathBuf,
        /// Which flow, where, and what.
        error: FlowError,
    },
    /// The path is not a regular file (a FIFO, socket, device or directory).
    #[error("{}", not_regular(*what, path))]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is instead.
        what: NotRegular,
    },
    /// A compressed file could not be decompressed.
    #[error("{path}: this {compression}-compressed file cannot be read: {error}")]
    Decompress {
        /// The file.
        path: PathBuf,
        /// Its compression.
        compression: Compression,
        /// What went wrong.
        error: DecompressError,
    },
    /// A HAR document could not be read.
    #[error("{path}: this HAR file cannot be read: {error}")]
    Har {
        /// The file.
        path: PathBuf,
        /// Which entry, where, and what.
        error: HarError,
    },
}

impl LoadError {
    /// The flow error, if this is one.
    pub fn flow_error(&self) -> Option<&FlowError> {
        match self {
            LoadError::Flow { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Something the loader reports while loading.
#[derive(Debug)]
pub enum LoadEvent<'e> {
    /// A file is about to be read; its size in bytes.
    FileStart {
        /// The file.
        path: &'e Path,
        /// Its size.
        bytes: u64,
    },
    /// A compressed file is about to be decompressed into memory (once, before it is read).
    Decompressing {
        /// The file.
        path: &'e Path,
        /// Its compression.
        compression: Compression,
        /// Its compressed size in bytes.
        bytes: u64,
    },
    /// A file larger than [`LoadOptions::private_copy_up_to`] is served from a mapping of it
    /// instead of a private copy: rewriting it in place would change, or with a truncation
    /// fault, what is being served.
    Mapped {
        /// The file.
        path: &'e Path,
        /// Its size in bytes.
        bytes: u64,
    },
    /// A bad flow was skipped (with `skip_bad_flows`).
    SkippedBadFlow {
        /// The file.
        path: &'e Path,
        /// The flow's error.
        error: &'e FlowError,
    },
    /// Reading of the current file reached this offset.
    Progress(u64),
    /// The next HTTP flow (ids count up from 0 across files) was read; its bytes are still in
    /// the cache, so this is the cheap moment to derive anything per flow.
    HttpFlow {
        /// Its request.
        request: &'e RequestView<'e>,
        /// Its response, if it has one.
        response: Option<&'e ResponseView<'e>>,
    },
}

/// A position of bytes inside a recording (for bodies served straight from the mapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Span {
    /// Which file.
    pub file: u32,
    /// Offset in that file.
    pub start: u64,
    /// Length in bytes.
    pub len: u64,
}

/// Cache lines of a flow's request and of its response that [`Recording::touch_flow`] loads.
const TOUCHED_LINES: usize = 8;

/// One or more flow files read as one recording, in order.
pub struct Recording {
    /// The files, in `-S` order.
    files: Vec<SourceFile>,
    /// Every HTTP flow of every file, in order.
    flows: Vec<FlowEntry>,
    /// What was loaded.
    summary: LoadSummary,
}

impl fmt::Debug for Recording {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Recording")
            .field(
                "files",
                &self.files.iter().map(|s| &s.path).collect::<Vec<_>>(),
            )
            .field("summary", &self.summary)
            .finish()
    }
}

impl Recording {
    /// Maps and reads the files, in order, as one recording. Each must be a regular file (or
    /// `/dev/null`, an empty one); a compressed file is decompressed into memory first.
    pub fn open(
        paths: &[PathBuf],
        options: LoadOptions,
        on_event: &mut dyn FnMut(LoadEvent<'_>),
    ) -> Result<Recording, LoadError> {
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            let mut backing = open_file(path, options.private_copy_up_to)?;
            let compression = Compression::sniff(backing.bytes());
            if let Some(compression) = compression {
                let compressed = backing.bytes();
                on_event(LoadEvent::Decompressing {
                    path,
                    compression,
                    bytes: compressed.len() as u64,
                });
                let limit = options.max_decompressed.unwrap_or(u64::MAX);
                let bytes = compression.decompress(compressed, limit).map_err(|error| {
                    LoadError::Decompress {
                        path: path.clone(),
                        compression,
                        error,
                    }
                })?;
                backing = Backing::Owned(bytes);
            }
            // A HAR document is served from the flows made of it, not from its mapping.
            let served_mapped = matches!(&backing, Backing::Mapped(map) if !is_har(map));
            if let (true, Backing::Mapped(map), Some(_)) =
                (served_mapped, &backing, options.private_copy_up_to)
            {
                on_event(LoadEvent::Mapped {
                    path,
                    bytes: map.len() as u64,
                });
            }
            files.push(SourceFile {
                path: path.clone(),
                backing,
                compression,
                har_len: None,
            });
        }
        Recording::read(files, options, on_event)
    }

    /// Reads in-memory files (name, bytes) as one recording.
    pub fn from_bytes(
        files: Vec<(PathBuf, Vec<u8>)>,
        options: LoadOptions,
    ) -> Result<Recording, LoadError> {
        Recording::from_bytes_observed(files, options, &mut |_| {})
    }

    /// Like [`Recording::from_bytes`], reporting what is read to `on_event` as
    /// [`Recording::open`] does.
    pub fn from_bytes_observed(
        files: Vec<(PathBuf, Vec<u8>)>,
        options: LoadOptions,
        on_event: &mut dyn FnMut(LoadEvent<'_>),
    ) -> Result<Recording, LoadError> {
        let files = files
            .into_iter()
            .map(|(path, bytes)| SourceFile {
                path,
                backing: Backing::Owned(bytes),
                compression: None,
                har_len: None,
            })
            .collect();
        Recording::read(files, options, on_event)
    }

    fn read(
        files: Vec<SourceFile>,
        options: LoadOptions,
        on_event: &mut dyn FnMut(LoadEvent<'_>),
    ) -> Result<Recording, LoadError> {
        let mut flows: Vec<FlowEntry> = Vec::new();
        let mut summary = LoadSummary {
            files: files.len(),
            ..LoadSummary::default()
        };
        // HAR documents become format-21 flows in memory once, here; the recording then reads
        // and serves them as it does a decompressed file.
        let mut files = files;
        for (index, file) in files.iter_mut().enumerate() {
            if !is_har(file.backing.bytes()) {
                continue;
            }
            let file_index = u32::try_from(index).expect("invariant: fewer than 2^32 files");
            let flows = har::to_flows(file.backing.bytes(), file_index).map_err(|error| {
                LoadError::Har {
                    path: file.path.clone(),
                    error,
                }
            })?;
            summary.har_bytes += flows.len() as u64;
            file.har_len = Some(file.backing.bytes().len() as u64);
            file.backing = Backing::Owned(flows);
        }
        summary.decompressed_bytes = files
            .iter()
            .filter(|f| f.compression.is_some())
            .map(|f| f.backing.bytes().len() as u64)
            .sum();
        summary.copied_bytes = files
            .iter()
            .filter(|f| matches!(f.backing, Backing::Copied(_)))
            .map(|f| f.backing.bytes().len() as u64)
            .sum();
        for (index, file) in files.iter().enumerate() {
            let bytes = file.backing.bytes();
            // A HAR file counts as its own size (progress offsets are of the flows made of it).
            let size = file.har_len.unwrap_or(bytes.len() as u64);
            summary.bytes += size;
            on_event(LoadEvent::FileStart {
                path: &file.path,
                bytes: size,
            });
            let file_index = u32::try_from(index).expect("invariant: fewer than 2^32 files");
            let contents =
                mitm::read_flows(
                    bytes,
                    file_index,
                    options.skip_bad_flows,
                    &mut |e| match e {
                        ReadEvent::SkippedBadFlow(error) => on_event(LoadEvent::SkippedBadFlow {
                            path: &file.path,
                            error,
                        }),
                        ReadEvent::Progress(p) => on_event(LoadEvent::Progress(p)),
                        ReadEvent::HttpFlow { request, response } => {
                            on_event(LoadEvent::HttpFlow { request, response })
                        }
                    },
                )
                .map_err(|error| LoadError::Flow {
                    path: file.path.clone(),
                    error,
                })?;
            merge(&mut summary, &mut flows, contents);
        }
        // The entry vector doubled while growing: an exact-size copy keeps heap per flow at
        // size_of::<FlowEntry>(), on huge pages where the kernel offers them (looked up at random
        // for every request).
        let flows = crate::hugepages::copied_vec(&flows);
        summary.http_flows = flows.len() as u64;
        Ok(Recording {
            files,
            flows,
            summary,
        })
    }

    /// Number of HTTP flows (with or without response).
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Number of HTTP flows read from file `file` (0-based, `-S` order); 0 past the last file.
    pub fn flows_in_file(&self, file: usize) -> usize {
        let start = self.flows.partition_point(|e| (e.file as usize) < file);
        let end = self.flows.partition_point(|e| (e.file as usize) <= file);
        end - start
    }

    /// Whether there are no HTTP flows.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// The HTTP flow with this id (`0..len()`).
    ///
    /// # Panics
    /// If `id >= len()`.
    pub fn flow(&self, id: usize) -> FlowView<'_> {
        let entry = &self.flows[id];
        let bytes = self.files[entry.file as usize].backing.bytes();
        let (request, response) = mitm::entry_views(bytes, entry);
        FlowView {
            id,
            file: entry.file as usize,
            number: u64::from(entry.number),
            offset: entry.offset(),
            request,
            response,
        }
    }

    /// The `error` of flow `id`, if it has one (a failed exchange, as mitmproxy saves it): read
    /// from the flow's top-level dict on demand (`inspect`, `convert`; replay never reads it).
    ///
    /// # Panics
    /// If `id >= len()`.
    pub fn error(&self, id: usize) -> Option<ErrorView<'_>> {
        let entry = &self.flows[id];
        mitm::entry_error(self.files[entry.file as usize].backing.bytes(), entry)
    }

    /// Starts loading the first cache lines of flow `id`'s request and response into the CPU
    /// cache, all at once, before they are parsed (parsing is a chain of dependent loads, each
    /// stalling on a miss in a large recording).
    ///
    /// # Panics
    /// If `id >= len()`.
    pub fn touch_flow(&self, id: usize) {
        self.flow_lines(&self.flows[id], crate::prefetch::touch);
    }

    /// Starts loading flow `id`'s entry (what [`Recording::prefetch_flow`] then reads); nothing
    /// for an id out of range.
    pub fn prefetch_entry(&self, id: usize) {
        if let Some(entry) = self.flows.get(id) {
            crate::prefetch::line(entry);
        }
    }

    /// Starts loading the cache lines of flow `id`'s request and response that
    /// [`Recording::touch_flow`] loads, without waiting for them; nothing for an id out of range.
    pub fn prefetch_flow(&self, id: usize) {
        if let Some(entry) = self.flows.get(id) {
            self.flow_lines(entry, crate::prefetch::lines);
        }
    }

    /// Calls `load` with the first [`TOUCHED_LINES`] lines of `entry`'s request and of its
    /// response (the file's bytes, an offset, a line count).
    #[inline]
    fn flow_lines(&self, entry: &FlowEntry, load: fn(&[u8], u64, usize)) {
        let bytes = self.files[entry.file as usize].backing.bytes();
        load(bytes, entry.request, TOUCHED_LINES);
        if entry.response != FlowEntry::NO_RESPONSE {
            load(bytes, entry.response, TOUCHED_LINES);
        }
    }

    /// The request of flow `id` alone (cheaper than [`Recording::flow`]).
    ///
    /// # Panics
    /// If `id >= len()`.
    pub fn request(&self, id: usize) -> RequestView<'_> {
        let entry = &self.flows[id];
        mitm::entry_request(self.files[entry.file as usize].backing.bytes(), entry)
    }

    /// Whether flow `id` has a recorded response (no parsing).
    ///
    /// # Panics
    /// If `id >= len()`.
    pub fn has_response(&self, id: usize) -> bool {
        self.flows[id].response != mitm::FlowEntry::NO_RESPONSE
    }

    /// The response of flow `id` alone, if it has one (cheaper than [`Recording::flow`]).
    ///
    /// # Panics
    /// If `id >= len()`.
    pub fn response(&self, id: usize) -> Option<ResponseView<'_>> {
        let entry = &self.flows[id];
        mitm::entry_response(self.files[entry.file as usize].backing.bytes(), entry)
    }

    /// [`Recording::request`] without its timestamps (`timestamp_start` reads `0.0`,
    /// `timestamp_end` `None`): what comparing a match key needs, without parsing two decimal
    /// floats.
    ///
    /// # Panics
    /// If `id >= len()`.
    pub fn request_untimed(&self, id: usize) -> RequestView<'_> {
        let entry = &self.flows[id];
        mitm::entry_request_untimed(self.files[entry.file as usize].backing.bytes(), entry)
    }

    /// The [`KeyFields`] of flow `id`'s request: the cheapest read of a recorded request, for
    /// confirming a lookup.
    ///
    /// # Panics
    /// If `id >= len()`.
    pub fn key_fields(&self, id: usize) -> KeyFields<'_> {
        let entry = &self.flows[id];
        mitm::entry_key_fields(self.files[entry.file as usize].backing.bytes(), entry)
    }

    /// [`Recording::response`] without its timestamps (`timestamp_start` reads `0.0`,
    /// `timestamp_end` `None`), for the replay path, which keeps each response's start from
    /// load.
    ///
    /// # Panics
    /// If `id >= len()`.
    pub fn response_untimed(&self, id: usize) -> Option<ResponseView<'_>> {
        let entry = &self.flows[id];
        mitm::entry_response_untimed(self.files[entry.file as usize].backing.bytes(), entry)
    }

    /// Every HTTP flow, in recording order.
    pub fn flows(&self) -> impl Iterator<Item = FlowView<'_>> + '_ {
        (0..self.flows.len()).map(|id| self.flow(id))
    }

    /// What was loaded.
    pub fn summary(&self) -> &LoadSummary {
        &self.summary
    }

    /// Path of file `file`.
    pub fn path(&self, file: usize) -> &Path {
        &self.files[file].path
    }

    /// Where `bytes` (a slice of one of this recording's views) lies, or `None` if it is not
    /// part of the recording (e.g. a `'static` default).
    pub fn span_of(&self, bytes: &[u8]) -> Option<Span> {
        let addr = bytes.as_ptr() as usize;
        self.files.iter().enumerate().find_map(|(i, f)| {
            let all = f.backing.bytes();
            let start = all.as_ptr() as usize;
            (addr >= start && addr + bytes.len() <= start + all.len()).then(|| Span {
                file: i as u32,
                start: (addr - start) as u64,
                len: bytes.len() as u64,
            })
        })
    }

    /// The bytes at `span`.
    ///
    /// # Panics
    /// If the span does not come from [`Recording::span_of`] on this recording.
    pub fn bytes(&self, span: Span) -> &[u8] {
        let all = self.files[span.file as usize].backing.bytes();
        let start = usize::try_from(span.start).ok();
        let end = span.start.checked_add(span.len).map(usize::try_from);
        match (start, end) {
            (Some(start), Some(Ok(end))) => &all[start..end],
            _ => panic!("span {span:?} is not from this recording"),
        }
    }

    /// Heap bytes this recording holds beyond its fixed parts (the per-flow entries); the file
    /// bytes themselves live in the page cache through the mapping.
    pub fn index_heap_bytes(&self) -> usize {
        self.flows.capacity() * std::mem::size_of::<FlowEntry>()
    }
}

fn merge(summary: &mut LoadSummary, flows: &mut Vec<FlowEntry>, contents: FileContents) {
    summary.without_response += contents.without_response;
    summary.skipped.tcp += contents.skipped.tcp;
    summary.skipped.udp += contents.skipped.udp;
    summary.skipped.dns += contents.skipped.dns;
    summary.skipped.websocket += contents.skipped.websocket;
    summary.bad_flows += contents.bad_flows;
    summary.versions.extend(contents.versions);
    if flows.is_empty() {
        *flows = contents.flows;
    } else {
        flows.extend(contents.flows);
    }
}

/// `/dev/null`'s device number: the one device read (as an empty recording).
const DEV_NULL: libc::dev_t = libc::makedev(1, 3);

/// Opens a recording file and reads it into private memory when it is at most `copy_up_to`
/// bytes, else maps it read-only (an empty file needs neither). It must be a regular file, or
/// `/dev/null`: it is opened non-blocking (so a FIFO without a writer cannot hold start-up in
/// `open`) and then checked with `fstat`.
fn open_file(path: &Path, copy_up_to: Option<u64>) -> Result<Backing, LoadError> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
    let io = |source| LoadError::Io {
        path: path.to_path_buf(),
        source,
    };
    let refuse = |what| LoadError::NotRegular {
        path: path.to_path_buf(),
        what,
    };
    #[allow(clippy::disallowed_methods)] // the one place the core opens a file
    let opened = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        // open(2) on a Unix socket fails with ENXIO: say what it is rather than "no such device".
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => {
            return Err(match std::fs::metadata(path) {
                Ok(m) if m.file_type().is_socket() => refuse(NotRegular::Socket),
                _ => io(e),
            })
        }
        Err(e) => return Err(io(e)),
    };
    let meta = file.metadata().map_err(io)?;
    let kind = meta.file_type();
    let refused = if kind.is_file() {
        None
    } else if kind.is_char_device() && meta.rdev() == DEV_NULL {
        return Ok(Backing::Empty);
    } else if kind.is_dir() {
        Some(NotRegular::Directory)
    } else if kind.is_fifo() {
        Some(NotRegular::Fifo)
    } else if kind.is_socket() {
        Some(NotRegular::Socket)
    } else if kind.is_block_device() {
        Some(NotRegular::BlockDevice)
    } else {
        Some(NotRegular::CharDevice)
    };
    if let Some(what) = refused {
        return Err(refuse(what));
    }
    let len = meta.len();
    if len == 0 {
        return Ok(Backing::Empty);
    }
    if copy_up_to.is_some_and(|limit| len <= limit) {
        // One copy at load, so that what is served can no longer be changed (or, by a
        // truncation, turned into a fault) by another process writing the file (plain pages:
        // advised for huge pages, the faults' compaction made the copy take 2.7 times as long
        // as mapping, against 1.4 times); `-w` of a new recording over the served one, or `cp` over it, is common. A file
        // that grows while it is read is taken as it was at `fstat`; one that shrinks, as far
        // as it reaches (the loader then names the cut flow).
        use std::io::Read;
        let size = usize::try_from(len).map_err(|_| io(std::io::ErrorKind::OutOfMemory.into()))?;
        let mut bytes = Vec::with_capacity(size);
        (&file).take(len).read_to_end(&mut bytes).map_err(io)?;
        return Ok(if bytes.is_empty() {
            Backing::Empty
        } else {
            Backing::Copied(bytes)
        });
    }
    // MAP_POPULATE faults the whole (page-cached) file in with one call instead of one page fault
    // per 4 KiB while reading: 400 MB loaded in 0.68 s without it (0.66 s of it system time).
    // SAFETY: the mapping is read-only and private to this process. If another process truncates
    // or rewrites the file while we serve from it, reads may see new bytes or fault; that is the
    // documented contract of a mapped file (the server maps only files over `copy_up_to`, says so
    // at start-up, and the README says to rename a new file over it instead), the same one
    // ripgrep's mmap path accepts.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.map_err(io)?;
    Ok(Backing::Mapped(map))
}
