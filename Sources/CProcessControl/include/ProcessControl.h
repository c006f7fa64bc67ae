// CProcessControl: process-level calls Swift cannot make directly (prctl is variadic; signal handlers must be
// async-signal-safe C).
#ifndef KVSTAT_PROCESS_CONTROL_H
#define KVSTAT_PROCESS_CONTROL_H
/// Asks the kernel to send `signal` to this process when its parent exits (Linux; a no-op returning -1
/// elsewhere). Returns 0 on success.
int kv_set_parent_death_signal(int signal);

/// Installs handlers for SIGSEGV, SIGBUS, SIGFPE and SIGILL that turn a crash whose stack passes through a
/// shared library whose path contains `library` (e.g. "libhdf5") into one line on stderr — `kvstat: error:
/// FILE: the HDF5 library crashed …` — and exit status 65; any other crash goes to the previous handler.
/// Returns 0 on success.
int kv_install_crash_guard(const char *library);

/// Records the file being read, for the crash guard's message (async-signal-safe to read): a crash is a corrupt
/// input (exit 65).
void kv_crash_guard_note_file(const char *path);

/// Records the file being written: a crash while building it is an internal error (exit 70).
void kv_crash_guard_note_writing(const char *path);
/// Starts a thread that ends the process with one error line and exit 65 when a libhdf5 metadata call (bracketed
/// by `kv_metadata_call_begin`/`end`) runs longer than `seconds`: a corrupt file can make libhdf5 loop forever.
int kv_install_metadata_watchdog(double seconds);
void kv_metadata_call_begin(void);
void kv_metadata_call_end(void);
#endif
