//! tcpdump filter expressions, compiled by libpcap loaded at run time. Building vswitch needs no
//! system library: libpcap is opened (dlopen) only when a capture asks for a filter, and its
//! absence is a clear error naming the package to install.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};
use std::sync::{Arc, OnceLock};

use libloading::Library;

/// Shared object names tried in order: Debian and Ubuntu ship `libpcap.so.0.8`, others `.so.1`;
/// the unversioned name exists only with the -dev package.
const LIBPCAP_NAMES: &[&str] = &["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"];
/// libpcap's link type for Ethernet (`DLT_EN10MB`).
const DLT_EN10MB: c_int = 1;
/// `PCAP_NETMASK_UNKNOWN`: broadcast tests in a filter are refused rather than guessed.
const PCAP_NETMASK_UNKNOWN: c_uint = 0xffff_ffff;
/// Snap length the filter is compiled for; frames are tested whole, whatever their size.
const FILTER_SNAPLEN: c_int = 262_144;

/// Why a filter could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    /// libpcap is not installed.
    #[error(
        "capture filters need libpcap at run time, and none was found ({tried}): install it \
         (Debian: apt-get install libpcap0.8; Ubuntu 24.04: libpcap0.8t64; Fedora: libpcap), \
         or capture without a filter"
    )]
    NoLibpcap { tried: String },
    /// libpcap refused the expression.
    #[error("invalid capture filter {filter:?}: {message}")]
    Invalid { filter: String, message: String },
}

/// `struct bpf_program` of libpcap.
#[repr(C)]
struct BpfProgram {
    bf_len: c_uint,
    bf_insns: *mut c_void,
}

/// `struct pcap_pkthdr` of libpcap (timestamps unused by filters).
#[repr(C)]
struct PacketHeader {
    ts_sec: libc::time_t,
    ts_usec: libc::suseconds_t,
    caplen: u32,
    len: u32,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type Compile =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, c_uint) -> c_int;
type GetErr = unsafe extern "C" fn(*mut c_void) -> *const c_char;
type Close = unsafe extern "C" fn(*mut c_void);
type FreeCode = unsafe extern "C" fn(*mut BpfProgram);
type OfflineFilter =
    unsafe extern "C" fn(*const BpfProgram, *const PacketHeader, *const u8) -> c_int;

/// The libpcap functions filters use, resolved once.
struct Libpcap {
    open_dead: OpenDead,
    compile: Compile,
    geterr: GetErr,
    close: Close,
    freecode: FreeCode,
    offline_filter: OfflineFilter,
    /// Keeps the functions above loaded.
    _library: Library,
}

impl Libpcap {
    /// Opens the first of `names` that loads and resolves the functions filters need.
    fn open(names: &[&str]) -> Result<Libpcap, FilterError> {
        for name in names {
            // SAFETY: libpcap's initialisers have no preconditions; the symbols below are
            // declared with the signatures of pcap.h, which has kept them stable since 1.0.
            unsafe {
                let Ok(library) = Library::new(name) else {
                    continue;
                };
                let resolved = (|| {
                    Ok::<_, libloading::Error>(Libpcap {
                        open_dead: *library.get::<OpenDead>(b"pcap_open_dead\0")?,
                        compile: *library.get::<Compile>(b"pcap_compile\0")?,
                        geterr: *library.get::<GetErr>(b"pcap_geterr\0")?,
                        close: *library.get::<Close>(b"pcap_close\0")?,
                        freecode: *library.get::<FreeCode>(b"pcap_freecode\0")?,
                        offline_filter: *library.get::<OfflineFilter>(b"pcap_offline_filter\0")?,
                        _library: library,
                    })
                })();
                if let Ok(libpcap) = resolved {
                    return Ok(libpcap);
                }
            }
        }
        Err(FilterError::NoLibpcap {
            tried: names.join(", "),
        })
    }

    /// The process's libpcap, loaded on first use.
    fn get() -> Result<Arc<Libpcap>, FilterError> {
        static LIBPCAP: OnceLock<Result<Arc<Libpcap>, FilterError>> = OnceLock::new();
        LIBPCAP
            .get_or_init(|| Libpcap::open(LIBPCAP_NAMES).map(Arc::new))
            .clone()
    }
}

/// A compiled tcpdump filter for Ethernet frames.
pub struct Filter {
    program: BpfProgram,
    libpcap: Arc<Libpcap>,
}

// SAFETY: the program is plain memory owned by this value; libpcap's filter function only reads
// it, so sharing and sending it between threads is sound.
unsafe impl Send for Filter {}
unsafe impl Sync for Filter {}

impl Filter {
    /// Compiles `expression` with libpcap (as tcpdump does).
    pub fn compile(expression: &str) -> Result<Filter, FilterError> {
        Filter::compile_with(Libpcap::get()?, expression)
    }

    fn compile_with(libpcap: Arc<Libpcap>, expression: &str) -> Result<Filter, FilterError> {
        let invalid = |message: String| FilterError::Invalid {
            filter: expression.to_string(),
            message,
        };
        let text = CString::new(expression).map_err(|_| invalid("contains a NUL byte".into()))?;
        let mut program = BpfProgram {
            bf_len: 0,
            bf_insns: std::ptr::null_mut(),
        };
        // SAFETY: a dead handle needs no device; it is closed below on every path, and the error
        // string is copied before that. `program` is freed by Filter's Drop once compiled.
        unsafe {
            let handle = (libpcap.open_dead)(DLT_EN10MB, FILTER_SNAPLEN);
            if handle.is_null() {
                return Err(invalid("libpcap could not open a dead handle".into()));
            }
            let status =
                (libpcap.compile)(handle, &mut program, text.as_ptr(), 1, PCAP_NETMASK_UNKNOWN);
            let message = (status != 0).then(|| {
                CStr::from_ptr((libpcap.geterr)(handle))
                    .to_string_lossy()
                    .into_owned()
            });
            (libpcap.close)(handle);
            if let Some(message) = message {
                return Err(invalid(message));
            }
        }
        Ok(Filter { program, libpcap })
    }

    /// Whether `frame` matches.
    pub fn matches(&self, frame: &[u8]) -> bool {
        let length = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let header = PacketHeader {
            ts_sec: 0,
            ts_usec: 0,
            caplen: length,
            len: length,
        };
        // SAFETY: the program was compiled by this libpcap and is alive; the header's caplen is
        // the frame's length, so the filter reads only inside `frame`.
        unsafe { (self.libpcap.offline_filter)(&self.program, &header, frame.as_ptr()) != 0 }
    }
}

impl Drop for Filter {
    fn drop(&mut self) {
        // SAFETY: the program was filled by pcap_compile and is freed once, here.
        unsafe { (self.libpcap.freecode)(&mut self.program) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_expression_is_refused_with_libpcaps_message() {
        let err = Filter::compile("icmp and hostt 1.2.3.4").err().unwrap();
        assert!(err.to_string().contains("invalid capture filter"), "{err}");
        assert!(Filter::compile("icmp and host 10.0.0.1").is_ok());
    }

    #[test]
    fn missing_libpcap_names_the_package() {
        let err = Libpcap::open(&["libpcap-not-here.so.9"]).err().unwrap();
        let message = err.to_string();
        assert!(message.contains("libpcap-not-here.so.9"), "{message}");
        assert!(message.contains("apt-get install libpcap0.8"), "{message}");
    }

    #[test]
    fn filter_matches_like_tcpdump() {
        // An ARP request and an IPv4 ICMP echo from 10.0.0.1 to 10.0.0.2.
        let mut arp = vec![0xff; 6];
        arp.extend([2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        arp.extend([0; 28]);
        let mut icmp = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        icmp.extend([
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ]);
        icmp.extend([8, 0, 0, 0, 0, 0, 0, 0]);
        let filter = Filter::compile("icmp and host 10.0.0.2").unwrap();
        assert!(filter.matches(&icmp));
        assert!(!filter.matches(&arp));
        assert!(Filter::compile("arp").unwrap().matches(&arp));
        // A frame cut short is not read past its end.
        assert!(!filter.matches(&icmp[..20]));
    }
}
