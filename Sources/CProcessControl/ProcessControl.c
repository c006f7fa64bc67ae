// prctl(PR_SET_PDEATHSIG) for batch children: they die with a batch that is killed, even by SIGKILL.
#include "ProcessControl.h"
#ifdef __linux__
#include <sys/prctl.h>
int kv_set_parent_death_signal(int signal) { return prctl(PR_SET_PDEATHSIG, signal, 0, 0, 0); }
#else
int kv_set_parent_death_signal(int signal) { (void)signal; return -1; }
#endif
