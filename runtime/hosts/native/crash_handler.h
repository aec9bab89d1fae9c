// The native host's crash handler. A crash inside the library kills the process (the agent reports
// WORKER_DIED with the signal); before it does, the handler leaves the signal, the call it happened
// in and a backtrace in the worker's stderr log, as Python's faulthandler does for the Python host.
//
// Caveats: the handler runs on its own stack (a stack overflow is caught too) and makes only
// async-signal-safe calls; it re-raises the signal with the default action so the process dies of
// it.
#pragma once

#include <string>

namespace parallelrun::rt::native {

// Installs the handler for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT (once, at start-up).
void InstallCrashHandler();

// What the host is doing now ("prn_run() of lib.so, mini-batch 3 attempt 1"), for the crash report.
// Call before each call into the library; not thread-safe (the host calls from one thread).
void SetCrashWhere(const std::string& where);

}  // namespace parallelrun::rt::native
