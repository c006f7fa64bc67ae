// Turns a crash inside one named C library (libhdf5 1.10 trusts sizes it reads from a file's metadata, so a
// corrupt file can make it fault) into kvstat's one error line and exit 65. A crash anywhere else is handed,
// unchanged, to the handler that was installed before (Swift's backtracer), so kvstat's own bugs still show.
#define _GNU_SOURCE
#include "ProcessControl.h"
#include <dlfcn.h>
#include <execinfo.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

static char kv_guard_library[64];
static char kv_guard_file[4096];
static atomic_int kv_guard_file_length;
static atomic_int kv_guard_writing;
static struct sigaction kv_guard_previous[32];
static const int kv_guard_signals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL};

static void kv_guard_write(const char *text, size_t length) {
    while (length > 0) {
        ssize_t n = write(STDERR_FILENO, text, length);
        if (n <= 0) return;
        text += n;
        length -= (size_t)n;
    }
}

/// `kvstat: error: FILE: ` (the file noted last, when any), written with write(2) only.
static void kv_guard_write_prefix(void) {
    const char *prefix = "kvstat: error: ";
    kv_guard_write(prefix, strlen(prefix));
    int length = atomic_load(&kv_guard_file_length);
    if (length > 0) {
        kv_guard_write(kv_guard_file, (size_t)length);
        kv_guard_write(": ", 2);
    }
}

static void kv_guard_handler(int sig, siginfo_t *info, void *context) {
    (void)info;
    (void)context;
    void *frames[24];
    int count = backtrace(frames, 24);
    int inLibrary = 0;
    for (int i = 0; i < count && !inLibrary; i++) {
        Dl_info where;
        if (dladdr(frames[i], &where) && where.dli_fname && strstr(where.dli_fname, kv_guard_library)) inLibrary = 1;
    }
    if (inLibrary) {
        kv_guard_write_prefix();
        if (atomic_load(&kv_guard_writing)) {
            // Building an output is kvstat's own doing: a crash there is a bug, not a bad input.
            const char *message = "the HDF5 library crashed while kvstat was writing this file "
                                  "(an internal error: please report it with the command line)\n";
            kv_guard_write(message, strlen(message));
            _exit(70);
        }
        const char *message = "the HDF5 library crashed while reading this file: its metadata is corrupt "
                              "(check it with h5dump, or write it again)\n";
        kv_guard_write(message, strlen(message));
        _exit(65);
    }
    // Not ours: restore the previous handler and return, so the faulting instruction runs again under it.
    if (sig > 0 && sig < 32) sigaction(sig, &kv_guard_previous[sig], NULL);
}

int kv_install_crash_guard(const char *library) {
    strncpy(kv_guard_library, library, sizeof kv_guard_library - 1);
    // backtrace() loads libgcc's unwinder on first use (it may allocate): do it now, not in the handler.
    void *warm[2];
    backtrace(warm, 2);
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = kv_guard_handler;
    action.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&action.sa_mask);
    for (size_t i = 0; i < sizeof kv_guard_signals / sizeof kv_guard_signals[0]; i++) {
        int sig = kv_guard_signals[i];
        if (sigaction(sig, &action, &kv_guard_previous[sig]) != 0) return -1;
    }
    return 0;
}

void kv_crash_guard_note_file(const char *path) {
    atomic_store(&kv_guard_writing, 0);
    size_t length = strlen(path);
    if (length >= sizeof kv_guard_file) length = sizeof kv_guard_file - 1;
    atomic_store(&kv_guard_file_length, 0);
    memcpy(kv_guard_file, path, length);
    atomic_store(&kv_guard_file_length, (int)length);
}

void kv_crash_guard_note_writing(const char *path) {
    kv_crash_guard_note_file(path);
    atomic_store(&kv_guard_writing, 1);
}

// A watchdog for libhdf5 metadata calls: a corrupt heap can send libhdf5 1.10 into an endless loop while it reads
// an attribute or a group. Each metadata call is bracketed by begin/end; a thread checks the bracket's age and,
// past the limit, reports the file as corrupt (exit 65). Data reads are not bracketed: they may take long.
#include <pthread.h>
#include <time.h>

static atomic_llong kv_watch_started;  // monotonic ns when the current metadata call began; 0 when none
static long long kv_watch_limit_ns;

static long long kv_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static void *kv_watch_loop(void *unused) {
    (void)unused;
    for (;;) {
        struct timespec pause = {0, 200000000};
        nanosleep(&pause, NULL);
        long long started = atomic_load(&kv_watch_started);
        if (started != 0 && kv_now_ns() - started > kv_watch_limit_ns) {
            kv_guard_write_prefix();
            const char *message = "the HDF5 library did not finish reading this file's metadata in time: it is "
                                  "probably corrupt (check it with h5dump, or write it again)\n";
            kv_guard_write(message, strlen(message));
            _exit(65);
        }
    }
    return NULL;
}

int kv_install_metadata_watchdog(double seconds) {
    kv_watch_limit_ns = (long long)(seconds * 1e9);
    pthread_t thread;
    pthread_attr_t attributes;
    pthread_attr_init(&attributes);
    pthread_attr_setdetachstate(&attributes, PTHREAD_CREATE_DETACHED);
    int status = pthread_create(&thread, &attributes, kv_watch_loop, NULL);
    pthread_attr_destroy(&attributes);
    return status;
}

void kv_metadata_call_begin(void) { atomic_store(&kv_watch_started, kv_now_ns()); }

void kv_metadata_call_end(void) { atomic_store(&kv_watch_started, 0); }
