// The native host's crash handler (crash_handler.h).

#include "runtime/hosts/native/crash_handler.h"

#include <execinfo.h>
#include <signal.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

namespace parallelrun::rt::native {
namespace {

constexpr size_t kAltStackBytes = 256 * 1024;  // the crash handler's stack (stack overflows)

char g_crash_where[512] = "the native host";  // set before each call into the library

const char* SignalName(int sig) {
  switch (sig) {
    case SIGSEGV:
      return "SIGSEGV (segmentation fault)";
    case SIGBUS:
      return "SIGBUS (bus error)";
    case SIGFPE:
      return "SIGFPE (arithmetic exception)";
    case SIGILL:
      return "SIGILL (illegal instruction)";
    case SIGABRT:
      return "SIGABRT (abort)";
    default:
      return "fatal signal";
  }
}

void CrashHandler(int sig) {
  // Only async-signal-safe calls: write(2), backtrace_symbols_fd (libgcc is loaded at start-up).
  auto put = [](const char* s) { (void)!::write(STDERR_FILENO, s, std::strlen(s)); };
  auto summary = [&] {
    put("parallelrun-native-host: ");
    put(SignalName(sig));
    put(" in ");
    put(g_crash_where);
    put("\n");
  };
  summary();
  put("backtrace:\n");
  void* frames[64];
  int n = ::backtrace(frames, 64);
  // A stack overflow is one frame repeated: print it once with a count.
  for (int i = 0; i < n;) {
    int same = 1;
    while (i + same < n && frames[i + same] == frames[i]) ++same;
    ::backtrace_symbols_fd(&frames[i], 1, STDERR_FILENO);
    if (same > 1) {
      char count[16];
      int len = 0;
      for (int v = same; v > 0; v /= 10) count[len++] = static_cast<char>('0' + v % 10);
      put("  (");
      while (len > 0) (void)!::write(STDERR_FILENO, &count[--len], 1);
      put(" times)\n");
    }
    i += same;
  }
  // Again at the end: the agent quotes the tail of the stderr log.
  summary();
  // Die of the same signal, so the agent reports it.
  ::signal(sig, SIG_DFL);
  ::raise(sig);
}

}  // namespace

void InstallCrashHandler() {
  void* warm[1];
  ::backtrace(warm, 1);  // loads libgcc now: the handler must not load it
  alignas(16) static char alt_stack[kAltStackBytes];
  stack_t ss{};
  ss.ss_sp = alt_stack;
  ss.ss_size = sizeof alt_stack;
  ::sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = CrashHandler;
  sa.sa_flags = SA_ONSTACK | SA_RESETHAND;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) ::sigaction(sig, &sa, nullptr);
}

void SetCrashWhere(const std::string& where) {
  std::snprintf(g_crash_where, sizeof g_crash_where, "%s", where.c_str());
}

}  // namespace parallelrun::rt::native
