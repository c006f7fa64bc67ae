// CProcessControl: prctl(2) calls Swift cannot make directly (prctl is variadic).
#ifndef KVSTAT_PROCESS_CONTROL_H
#define KVSTAT_PROCESS_CONTROL_H
/// Asks the kernel to send `signal` to this process when its parent exits (Linux; a no-op returning -1
/// elsewhere). Returns 0 on success.
int kv_set_parent_death_signal(int signal);
#endif
