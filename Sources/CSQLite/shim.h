// CSQLite: the SQLite C library (libsqlite3-dev), for the batch ledger. Only KVBatch imports this module.
#ifndef KVSTAT_CSQLITE_SHIM_H
#define KVSTAT_CSQLITE_SHIM_H
#include <sqlite3.h>
// SQLITE_TRANSIENT is a macro casting -1 to a function pointer, which Swift cannot import.
static inline sqlite3_destructor_type kv_sqlite_transient(void) { return SQLITE_TRANSIENT; }
#endif
